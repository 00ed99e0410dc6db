"""Offline OpenPGP signature checks with GnuPG.

One signature file, one ``gpg --verify SIG DATA``, as careful OpenPGP callers
run it (GPGME, Qubes' split-gpg, the fixes after "Johnny, you are fired"):

* The signature and the signed bytes come from memory (memory file
  descriptors handed over with ``pass_fds``), so what gpg checked is exactly
  what the caller then parses; nothing is read twice from a file that could
  change in between.
* gpg's machine-readable status goes to a pipe of its own (``--status-fd``)
  and is read by :mod:`gitian.gpgstatus`; its human text (stderr), which
  quotes the signature and the key (user IDs, the Signer's User ID,
  notations, policy URLs, revocation reasons), goes to another and never
  decides anything.
* gpg's exit status counts: anything but 0 is never good.
* Nothing reaches a keyserver: ``--disable-dirmngr`` keeps the network
  helper from starting at all, ``--no-auto-key-retrieve`` and
  ``--auto-key-locate local`` say the same in gpg's own words, and
  ``--no-autostart`` keeps the agent out of it.

:func:`verify_each` runs one check per signature, as many at once as there
are CPUs, hands each result over as soon as it is there, and stops (kills
and reaps) whatever still runs on every way out: an error, Ctrl-C, a
timeout.  gpg needs ``pass_fds``, which :func:`gitian.run.run` does not
offer yet, so this module starts it itself - argv lists only, never a shell.
Keys (importing, listing, expiry) are in :mod:`gitian.gpgkeys`.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import tempfile
import time
from collections.abc import Generator, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from gitian import log
from gitian.errors import ToolMissingError
from gitian.gpgstatus import Verification, parse_status
from gitian.run import signals_held

#: gpg options that keep every verification offline and side-effect free.
OFFLINE_OPTIONS: tuple[str, ...] = (
    "--batch",
    "--no-tty",
    "--no-autostart",
    "--disable-dirmngr",
    "--no-auto-key-retrieve",
    "--auto-key-locate",
    "local",
    "--keyserver-options",
    "no-auto-key-retrieve",
    "--no-auto-check-trustdb",
    "--no-permission-warning",
)

#: More than this on either of gpg's outputs for one signature is not gpg verifying.
MAX_OUTPUT_BYTES = 4 * 1024 * 1024

INSTALL_HINT = "install with: apt-get install gnupg"


@dataclass(frozen=True, slots=True)
class Keyring:
    """Where gpg finds the public keys: a home and/or explicit keyring files.

    ``home`` is ``None`` for the caller's own ``GNUPGHOME`` (or ``~/.gnupg``).
    """

    home: Path | None = None
    keyrings: tuple[Path, ...] = ()

    def effective_home(self) -> Path:
        """The home gpg will use: ours, else ``GNUPGHOME``, else ``~/.gnupg``."""
        if self.home is not None:
            return self.home
        env = os.environ.get("GNUPGHOME")
        return Path(env) if env else Path.home() / ".gnupg"

    def has_keys(self) -> bool:
        """Whether there is a keyring to look keys up in (gpg would make an empty one)."""
        if self.keyrings:
            return True
        home = self.effective_home()
        return any((home / f).is_file() for f in ("pubring.kbx", "pubring.gpg"))

    def options(self) -> list[str]:
        opts: list[str] = []
        if self.home is not None:
            opts += ["--homedir", os.fspath(self.home)]
        if self.keyrings:
            opts.append("--no-default-keyring")
            for k in self.keyrings:
                opts += ["--keyring", os.fspath(k)]
        return opts


# --------------------------------------------------------------------------
# running gpg


def _memfd(name: str, data: bytes) -> int:
    """A readable file descriptor holding ``data`` (not a path anyone can swap)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create(name, 0)
    else:  # pragma: no cover - non-Linux
        fd, path = tempfile.mkstemp(prefix=f"gverify-{name}-")
        os.unlink(path)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def gpg_env() -> dict[str, str]:
    """gpg's messages in English, whatever the user's locale (the report quotes them)."""
    env = dict(os.environ)
    env["LANG"] = env["LC_ALL"] = "C.UTF-8"
    env.pop("LANGUAGE", None)
    return env


@dataclass(eq=False)
class _Check:
    """One running ``gpg --verify``: its process and what its two pipes said."""

    proc: subprocess.Popen[bytes]
    status_fd: int  # our end of the --status-fd pipe
    stderr_fd: int
    deadline: float
    out: dict[int, list[bytes]] = field(default_factory=dict)
    problem: str = ""
    closed: bool = False  # our end of the status pipe
    # Readable once gpg has exited (Linux): the pool waits for it beside the
    # pipes instead of polling for the exit.
    pidfd: int | None = None

    @classmethod
    def start(
        cls,
        signature: bytes,
        data: bytes,
        keyring: Keyring,
        program: Sequence[str],
        timeout: float,
        env: dict[str, str],
    ) -> _Check:
        fds: list[int] = []
        try:
            fds.append(_memfd("signature", signature))
            fds.append(_memfd("signed-data", data))
            status_read, status_write = os.pipe()
            fds.append(status_write)
            argv = [
                *program,
                *OFFLINE_OPTIONS,
                *keyring.options(),
                "--status-fd",
                str(status_write),
                "--enable-special-filenames",
                "--verify",
                "--",
                f"-&{fds[0]}",
                f"-&{fds[1]}",
            ]
            log.debug("+ " + " ".join(argv))
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    pass_fds=fds,
                    env=env,
                )
            except BaseException as e:
                os.close(status_read)
                if isinstance(e, FileNotFoundError):
                    raise ToolMissingError(
                        f"verify program not found: {program[0]}", hint=INSTALL_HINT
                    ) from None
                raise
        finally:
            for fd in fds:  # gpg has its own copies
                os.close(fd)
        assert proc.stderr is not None
        stderr_fd = proc.stderr.fileno()
        check = cls(proc, status_read, stderr_fd, time.monotonic() + timeout)
        check.out = {status_read: [], stderr_fd: []}
        if hasattr(os, "pidfd_open"):
            try:
                check.pidfd = os.pidfd_open(proc.pid)
            except OSError:  # an old kernel: the exit is waited for in stop()
                pass
        return check

    def watched(self) -> list[int]:
        """What the pool waits on: both pipes, and the exit when it can."""
        return [*self.out, *([self.pidfd] if self.pidfd is not None else [])]

    def exited(self) -> None:
        """The pidfd said gpg has exited."""
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def read(self, fd: int) -> bool:
        """Read what is there on ``fd``; False once it is at its end (or too much came)."""
        chunk = os.read(fd, 1 << 16)
        self.out[fd].append(chunk)
        if sum(map(len, self.out[fd])) > MAX_OUTPUT_BYTES:
            self.problem = f"gpg wrote more than {MAX_OUTPUT_BYTES} bytes; stopped"
            return False
        return bool(chunk)

    def stop(self, *, finished: bool = False) -> None:
        """Reap gpg - killing it first unless it ``finished`` (closed its pipes)
        and exits before its deadline - and close our ends of its pipes.
        Safe to call again (after an interruption, say)."""
        if finished and self.proc.returncode is None:
            try:
                self.proc.wait(timeout=max(0.0, self.deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.problem = "gpg closed its output but did not exit"
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.exited()
        if not self.closed:
            self.closed = True
            os.close(self.status_fd)
        assert self.proc.stderr is not None
        self.proc.stderr.close()

    def result(self) -> Verification:
        status = b"".join(self.out[self.status_fd])
        text = b"".join(self.out[self.stderr_fd]).decode("utf-8", "replace")
        lines = tuple(line.decode("utf-8", "replace") for line in status.split(b"\n") if line)
        rc = self.proc.returncode if self.proc.returncode is not None else -1
        if self.problem:
            return Verification(rc, status_lines=lines, text=text, problem=self.problem)
        try:
            sigs = parse_status(status)
        except ValueError as e:
            return Verification(rc, status_lines=lines, text=text, problem=str(e))
        return Verification(rc, sigs, lines, text)


def verify_each(
    items: Iterable[tuple[bytes, bytes]],
    *,
    keyring: Keyring | None = None,
    program: Sequence[str] = ("gpg",),
    jobs: int | None = None,
    timeout: float = 120.0,
) -> Generator[tuple[int, Verification], None, None]:
    """Check each ``(signature, data)`` pair with its own ``gpg --verify``, and
    yield ``(position in items, verification)`` as each check finishes.

    ``items`` is read only as checks can be started, so a whole history's
    worth of signatures need never be in memory at once; ``jobs`` checks run
    at once (default: one per CPU).  Never raises for a bad or unusable
    signature: that is a :class:`Verification` that is not
    :attr:`~Verification.good`.  Raises :class:`ToolMissingError` when the
    program is not installed.  Whatever is still running when the generator
    is closed or raises (Ctrl-C included) is killed and reaped: use it in a
    ``with contextlib.closing(...)`` block.
    """
    keyring = keyring or Keyring()
    jobs = max(1, jobs or os.cpu_count() or 1)
    env = gpg_env()
    source = enumerate(items)
    more = True
    running: dict[int, tuple[int, _Check]] = {}  # fd -> (item index, check)
    open_fds: dict[int, int] = {}  # item index -> pipes still open
    checks: dict[int, _Check] = {}
    with selectors.DefaultSelector() as sel:
        try:
            while more or checks:
                while more and len(checks) < jobs:
                    nxt = next(source, None)
                    if nxt is None:
                        more = False
                        break
                    i, (sig, data) = nxt
                    # A signal (Ctrl-C) while gpg is being started is held until
                    # it is known here, so that the clean-up below stops it too.
                    with signals_held():
                        c = _Check.start(sig, data, keyring, program, timeout, env)
                        checks[i] = c
                        open_fds[i] = len(c.watched())
                        for fd in c.watched():
                            sel.register(fd, selectors.EVENT_READ)
                            running[fd] = (i, c)
                if not checks:
                    break
                now = time.monotonic()
                wait = max(0.0, min(c.deadline for c in checks.values()) - now)
                for key, _ in sel.select(wait):
                    fd = int(key.fd)
                    i, c = running[fd]
                    if fd == c.pidfd:
                        sel.unregister(fd)
                        del running[fd]
                        c.exited()
                        open_fds[i] -= 1
                    elif not c.read(fd):
                        sel.unregister(fd)
                        del running[fd]
                        open_fds[i] -= 1
                        if c.problem:
                            _drop(sel, running, c)
                            open_fds[i] = 0
                now = time.monotonic()
                for i in [i for i, c in checks.items() if open_fds[i] == 0 or c.deadline <= now]:
                    c = checks.pop(i)
                    finished = open_fds[i] == 0 and not c.problem
                    if open_fds[i]:
                        c.problem = f"gpg did not finish within {timeout:.0f}s"
                        _drop(sel, running, c)
                    c.stop(finished=finished)
                    yield i, c.result()
        finally:
            with signals_held():
                for c in checks.values():
                    c.stop()


def verify_many(
    items: Sequence[tuple[bytes, bytes]],
    *,
    keyring: Keyring | None = None,
    program: Sequence[str] = ("gpg",),
    jobs: int | None = None,
    timeout: float = 120.0,
) -> list[Verification]:
    """:func:`verify_each` for a list: the verifications in the order of ``items``."""
    results: list[Verification | None] = [None] * len(items)
    with closing(
        verify_each(items, keyring=keyring, program=program, jobs=jobs, timeout=timeout)
    ) as each:
        for i, v in each:
            results[i] = v
    return [r for r in results if r is not None]


def _drop(sel: selectors.BaseSelector, running: dict[int, tuple[int, _Check]], c: _Check) -> None:
    """Stop watching ``c``'s pipes (it is about to be stopped)."""
    for fd in [fd for fd, (_, other) in running.items() if other is c]:
        sel.unregister(fd)
        del running[fd]


def verify_detached(
    signature: bytes,
    data: bytes,
    *,
    keyring: Keyring | None = None,
    program: Sequence[str] = ("gpg",),
    timeout: float = 120.0,
) -> Verification:
    """Check one detached ``signature`` over ``data`` (both in memory), offline."""
    (v,) = verify_many([(signature, data)], keyring=keyring, program=program, timeout=timeout)
    return v
