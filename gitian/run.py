"""The one way to run a host command.

Every host command is an argv list (never a shell string), runs with a
predictable locale, is echoed as ``+ argv`` in debug mode, and on failure
raises :class:`CommandError` carrying a command line the user can paste to
rerun it.  Background processes (:func:`spawn`, :func:`pipe_from`) are
context managers that always stop and reap what they started, by handle.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from gitian import log
from gitian.errors import CommandError, ToolMissingError

Arg = str | os.PathLike[str]

# Debian package that provides each host program we may need, for hints.
PROVIDERS: dict[str, str] = {
    "mmdebstrap": "mmdebstrap",
    "debootstrap": "debootstrap",
    "bwrap": "bubblewrap",
    "lxc-start": "lxc",
    "lxc-execute": "lxc",
    "lxc-attach": "lxc",
    "lxc-stop": "lxc",
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-system-i386": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "mkfs.ext4": "e2fsprogs",
    "docker": "docker.io",
    "dockerd": "docker.io",
    "podman": "podman",
    "gpg": "gnupg",
    "git": "git",
    "ssh-keygen": "openssh-client",
    "setarch": "util-linux",
    "unshare": "util-linux",
    "tar": "tar",
    "dnsmasq": "dnsmasq-base",
    "iptables": "iptables",
}


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment host commands run with: ours, in a fixed C.UTF-8 locale."""
    env = dict(os.environ)
    env["LANG"] = "C.UTF-8"
    env.pop("LC_ALL", None)
    env.pop("LANGUAGE", None)
    if extra:
        env.update(extra)
    return env


def _argv(cmd: Sequence[Arg]) -> list[str]:
    if isinstance(cmd, (str, bytes)):
        raise TypeError("commands are argv lists, never strings")
    return [os.fspath(a) for a in cmd]


def which(program: str) -> str | None:
    """Find ``program`` on PATH, also looking in the sbin directories."""
    path = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"
    return shutil.which(program, path=path)


def require(*programs: str, why: str = "") -> None:
    """Fail with one clear line naming every missing program and its package."""
    missing = [p for p in programs if which(p) is None]
    if missing:
        pkgs = sorted({PROVIDERS.get(p, p) for p in missing})
        what = f" (needed {why})" if why else ""
        raise ToolMissingError(
            f"missing host program{'s' if len(missing) > 1 else ''}: {', '.join(missing)}{what}",
            hint=f"install with: apt-get install {' '.join(pkgs)}",
        )


def run(
    cmd: Sequence[Arg],
    *,
    check: bool = True,
    input: bytes | None = None,
    stdin: int | IO[Any] | None = None,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    capture: bool = False,
    env: Mapping[str, str] | None = None,
    cwd: Arg | None = None,
    timeout: float | None = None,
    pass_fds: Sequence[int] = (),
) -> subprocess.CompletedProcess[bytes]:
    """Run ``cmd`` and wait for it.

    ``capture=True`` collects stdout and stderr (as bytes).  ``env`` adds to
    :func:`base_env`.  ``pass_fds`` are inherited by the child (e.g. gpg's
    ``--status-fd``).  A non-zero exit raises :class:`CommandError` unless
    ``check`` is false.  Ctrl-C kills the child before re-raising.
    """
    if capture:
        stdout = subprocess.PIPE if stdout is None else stdout
        stderr = subprocess.PIPE if stderr is None else stderr
    if input is not None:
        stdin = subprocess.PIPE
    with _started(
        _argv(cmd), stdin, stdout, stderr, env, cwd, pass_fds, grace=5.0, background=False
    ) as proc:
        out, err = proc.communicate(input=input, timeout=timeout)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check and proc.returncode != 0:
        raise command_failed(result)
    return result


@contextmanager
def spawn(
    cmd: Sequence[Arg],
    *,
    env: Mapping[str, str] | None = None,
    stdin: int | IO[Any] | None = subprocess.DEVNULL,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    cwd: Arg | None = None,
    grace: float = 10.0,
    pass_fds: Sequence[int] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``cmd`` in the background for the length of the block.

    On leaving, a child still running is stopped (TERM, then KILL after
    ``grace`` seconds) and every child is reaped, so none is left behind or
    becomes a zombie, whatever ends the block.
    """
    with _started(
        _argv(cmd), stdin, stdout, stderr, env, cwd, pass_fds, grace=grace, background=True
    ) as proc:
        yield proc


@contextmanager
def pipe_from(
    cmd: Sequence[Arg], *, env: Mapping[str, str] | None = None, cwd: Arg | None = None
) -> Iterator[IO[bytes]]:
    """The output of ``cmd`` (e.g. ``tar -cf -``) to read while it runs.

    On leaving, our end of the pipe is closed and ``cmd`` waited for; if the
    block failed it is stopped, and if the block succeeded but ``cmd`` did
    not, :class:`CommandError` (with its stderr) is raised.
    """
    with (
        tempfile.TemporaryFile() as err,
        spawn(cmd, stdout=subprocess.PIPE, stderr=err, env=env, cwd=cwd) as proc,
    ):
        assert proc.stdout is not None
        try:
            yield proc.stdout
        finally:
            proc.stdout.close()
        proc.wait()
        if proc.returncode != 0:
            err.seek(0)
            done = subprocess.CompletedProcess(proc.args, proc.returncode, None, err.read())
            raise command_failed(done)


def pipeline(first: Sequence[Arg], second: Sequence[Arg]) -> None:
    """Run ``first | second``; CommandError naming the one that failed (``first`` first)."""
    with pipe_from(first) as stream:
        res = run(second, stdin=stream, capture=True, check=False)
    if res.returncode != 0:
        raise command_failed(res)


@contextmanager
def _started(
    argv: list[str],
    stdin: int | IO[Any] | None,
    stdout: int | IO[Any] | None,
    stderr: int | IO[Any] | None,
    env: Mapping[str, str] | None,
    cwd: Arg | None,
    pass_fds: Sequence[int],
    *,
    grace: float,
    background: bool,
) -> Iterator[subprocess.Popen[bytes]]:
    log.debug("+ " + shlex.join(argv) + (" &" if background else ""))
    # A signal that lands while the child is being started would leave it
    # running unseen (a mount completing after clean-up looked): hold
    # SIGINT/SIGTERM until there is a handle to kill, then deliver them.
    with signals_deferred() as pending:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                env=base_env(env),
                cwd=os.fspath(cwd) if cwd is not None else None,
                pass_fds=tuple(pass_fds),
            )
        except FileNotFoundError:
            require(argv[0])
            raise
    try:
        for signum in pending:
            signal.raise_signal(signum)
        yield proc
    finally:
        _kill(proc, grace)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if f is not None:
                f.close()


def remove_tree(path: Arg) -> None:
    """``rm -rf path``, for trees of any depth.

    ``shutil.rmtree`` recurses in Python and raises RecursionError on a tree
    nested deeper than the recursion limit, which any build script can make
    (in ``out/``, a cache, or a target's overlay layer).  GNU rm does not
    recurse, never follows symlinks, and with ``--one-file-system`` does not
    enter a file system mounted below ``path`` (it fails instead).
    """
    p = os.fspath(path)
    if os.path.lexists(p):
        run(["rm", "-rf", "--one-file-system", "--", p])


@contextmanager
def signals_deferred() -> Iterator[list[int]]:
    """Record SIGINT/SIGTERM instead of acting on them; the caller delivers
    the recorded ones (``signal.raise_signal``) once it can clean up.  In a
    thread other than the main one (which cannot set handlers) nothing is held."""
    pending: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return

    def hold(signum: int, frame: object) -> None:
        pending.append(signum)

    old = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield pending
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def signals_held() -> Iterator[None]:
    """Defer SIGINT/SIGTERM over a step that must not be cut in half (a pair of
    renames, clean-up); deliver them once it is done."""
    with signals_deferred() as pending:
        yield
    for signum in pending:
        signal.raise_signal(signum)


def command_failed(result: subprocess.CompletedProcess[bytes]) -> CommandError:
    tail = ""
    for stream in (result.stderr, result.stdout):
        if isinstance(stream, bytes) and stream.strip():
            lines = stream.decode("utf-8", "replace").rstrip().splitlines()
            tail = "\n".join(lines[-15:])
            break
    argv = [str(a) for a in result.args]
    return CommandError(
        f"command failed with exit status {result.returncode}: {shlex.join(argv)}",
        argv=argv,
        returncode=result.returncode,
        output=tail,
    )


def _kill(proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """Stop ``proc`` if it still runs (TERM, KILL after ``grace``) and reap it."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    except ProcessLookupError:
        pass


def is_root() -> bool:
    return os.geteuid() == 0


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
