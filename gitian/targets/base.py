"""The one interface every backend implements, and what the build pipeline uses.

A :class:`Target` is one clean build machine (container, sandbox or VM) made
from a base image.  The gbuild pipeline is written against this class only and
never asks which backend it has.  Container-like backends only supply an argv
prefix (:class:`PrefixTarget`); VM backends share one SSH implementation.
Copying in and out is written once here, as a tar stream through ``run()``.

Lifecycle, as the classic ``libexec`` tools split it::

    make_base()  make-base-vm          build base-<suite>-<arch>[...]
    reset()      make-clean-vm         fresh target from the base
    start()      start-target          boot / create it
    wait_ready() (gbuild)              until a command runs on it
    run()        on-target             a command as a user, exit status back
    copy_to()    copy-to-target
    copy_from()  copy-from-target
    stop()       stop-target           power off / remove; idempotent

Installed-packages layers (:mod:`gitian.layers`): ``base_identity()`` says
what the base is, ``keep_layer()`` keeps a target's state after gbuild's
package step, ``from_layer()`` makes the next ``reset()`` start from it, and
``drop_layer()`` releases it; a backend without layers leaves them as they are.

``session()`` stacks stop/reset/start/wait_ready and stops on the way out
(always after an error or Ctrl-C; on success unless asked to keep it).
State needed between separate processes (the libexec tools run one per
command) lives in ``var/``.
"""

from __future__ import annotations

import abc
import os
import re
import shlex
import subprocess
import tarfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, ClassVar, TypeVar

from gitian import log
from gitian import run as host
from gitian.errors import CommandError, TargetError, UsageError
from gitian.home import Home
from gitian.run import pipe_from, signals_held

#: the PATH every command on a target starts with
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


#: what a name in a target command's environment may look like
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def check_env(env: Mapping[str, str]) -> None:
    """Refuse an environment no command line can carry."""
    for k, v in env.items():
        if not ENV_NAME.match(k):
            raise UsageError(f"bad environment variable name {k!r}")
        if "\0" in v:
            raise UsageError(f"environment variable {k} contains a NUL byte")


def home_of(user: str) -> str:
    """A user's home on the target: the build user's is /home/<user>."""
    return "/root" if user == "root" else f"/home/{user}"


@dataclass(frozen=True)
class TargetConfig:
    """What every backend needs, parsed at the edge (CLI/env) once.  A
    backend with settings of its own has a subclass (``LxcConfig``, ...)."""

    home: Home
    suite: str
    arch: str  # i386 | amd64 (linux64 maps to amd64 images)
    distro: str = "ubuntu"  # also the build user's name
    memory_mib: int = 2000  # VMEM / gbuild -m
    nprocs: int = 2  # NPROCS / gbuild -j
    mirror_host: str | None = None  # MIRROR_HOST (an apt-cacher-ng on port 3142)

    def specialise(self, cls: type[C]) -> C:
        """This configuration as ``cls`` (a backend's own config class); that
        backend's settings keep their defaults unless this already is one."""
        if isinstance(self, cls):
            return self
        return cls(**{f.name: getattr(self, f.name) for f in fields(TargetConfig)})

    @property
    def user(self) -> str:
        """The build user on the target (classic: ``$DISTRO``, else ``ubuntu``)."""
        return self.distro or "ubuntu"

    @property
    def user_home(self) -> str:
        return home_of(self.user)

    @property
    def image_arch(self) -> str:
        return "amd64" if self.arch == "linux64" else self.arch


C = TypeVar("C", bound=TargetConfig)


@dataclass(frozen=True)
class BaseOptions:
    """make-base-vm's options."""

    distro: str = "ubuntu"
    suite: str = "xenial"
    arch: str = "amd64"
    disksize_mb: int = 12287
    mirror: str | None = None  # --mirror; None: MIRROR_HOST, host's apt sources, tool default
    docker_image_hash: str | None = None
    extra_packages: tuple[str, ...] = ()
    force: bool = False  # --force: make a base anew even where one serves already


@dataclass(frozen=True)
class RunResult:
    returncode: int
    stdout: bytes = b""
    stderr: bytes = b""
    ran: tuple[str, ...] = ()  # the host command that ran it, to paste and rerun


@dataclass(frozen=True)
class Command:
    """One command for a target, as :meth:`Target.run` was asked for it, with
    the whole environment it starts with."""

    argv: tuple[str, ...]
    user: str
    env: Mapping[str, str]
    stdin: bytes | IO[bytes] | None = None
    stdout: IO[bytes] | int | None = None
    stderr: IO[bytes] | int | None = None
    capture: bool = False
    network: bool = False


class Target(abc.ABC):
    """One backend.  Subclasses set ``name`` and implement the abstract methods."""

    name: ClassVar[str]
    #: the backend's own configuration class
    config_type: ClassVar[type[TargetConfig]] = TargetConfig
    #: the backend binds ``home.package_cache`` to /var/cache/apt/archives
    #: itself; otherwise the pipeline copies .debs in and out
    binds_package_cache: ClassVar[bool] = False

    def __init__(self, config: TargetConfig) -> None:
        self.config = config.specialise(self.config_type)

    # -- host checks -------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def unavailable_reason(
        cls, *, for_base: bool = False, config: TargetConfig | None = None
    ) -> str | None:
        """None if this host can run the backend (with ``config``'s settings,
        else the defaults), else one line saying what is missing and how to
        get it."""

    # -- lifecycle ---------------------------------------------------------
    @abc.abstractmethod
    def make_base(self, options: BaseOptions) -> None:
        """Build the base image for ``options`` (make-base-vm)."""

    @abc.abstractmethod
    def has_base(self) -> bool:
        """Whether the base this backend makes clean targets from exists here."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Make a clean target from the base (make-clean-vm)."""

    @abc.abstractmethod
    def start(self) -> None:
        """Start the target (start-target)."""

    def wait_ready(self, timeout: float = 60.0) -> None:  # noqa: B027 - most need no wait
        """Block until a command runs on the target; raise TargetError on timeout."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop the target and release what it holds.  Safe to call when not running."""

    @contextmanager
    def session(
        self,
        *,
        reset: bool = True,
        keep: bool = False,
        ready_timeout: float | None = None,
        step: Callable[[str], AbstractContextManager[None]] = log.step,
    ) -> Iterator[Target]:
        """Stop what runs, reset (unless ``reset`` is false), start and wait
        until a command runs; on the way out stop the target unless the block
        succeeded and ``keep`` is true.  After an error or an interruption it
        is always stopped, with further signals held off while it stops.
        ``step`` times and prints each phase (gbuild's progress lines)."""
        with step("Stopping target if it is up"):
            self.stop()
        if reset:
            with step("Making a new image copy"):
                self.reset()
        try:
            with step("Starting target"):
                self.start()
            with step("Checking if target is up"):
                if ready_timeout is None:
                    self.wait_ready()
                else:
                    self.wait_ready(ready_timeout)
            yield self
        except BaseException:
            with signals_held():
                try:
                    self.stop()
                except Exception as e:  # the original error matters more
                    log.warn(f"stopping the target failed too: {e}")
            raise
        if not keep:
            with step("Cleaning up target"):
                self.stop()

    # -- installed-packages layers (gitian.layers) ---------------------------
    def base_identity(self) -> dict[str, str] | None:
        """What identifies the base this target is made from, for the key of
        an installed-packages layer: it changes whenever the base is made
        anew.  None when the backend keeps no layers, or there is no base."""
        return None

    def keep_layer(self, dest: Path, name: str) -> int:
        """Stop the target, which ran the package step in a clean target
        from the base, and keep its state as a layer in the new, empty
        directory ``dest``; ``name`` (64 hex digits) names it.  Returns the
        bytes the layer takes outside ``dest`` (a Docker image), else 0."""
        raise TargetError(f"the {self.name} backend keeps no installed-packages layers")

    def from_layer(self, layer: Path | None) -> None:
        """Make the next :meth:`reset` start from ``layer`` (a directory
        :meth:`keep_layer` filled) instead of the base; None: the base again."""
        if layer is not None:
            raise TargetError(f"the {self.name} backend keeps no installed-packages layers")

    def drop_layer(self, layer: Path) -> None:  # noqa: B027 - most hold nothing outside it
        """Release what ``layer`` holds outside its directory before the
        directory is removed; TargetError if a running target still uses it."""

    # -- commands and files -------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bytes | IO[bytes] | None = None,
        stdout: IO[bytes] | int | None = None,
        stderr: IO[bytes] | int | None = None,
        capture: bool = False,
        check: bool = True,
        network: bool = False,
    ) -> RunResult:
        """Run ``argv`` on the target as ``user`` (default: the build user), in
        that user's home, with ``env`` added to :meth:`user_env`.

        ``stdin`` may be bytes or a file.  ``stdout``/``stderr`` may be files
        to stream into; ``capture`` collects them instead.  ``network`` asks
        for network access (apt steps); backends that can cut the network
        otherwise do so.  A non-zero exit raises :class:`CommandError` when
        ``check`` is true; either way the status is returned.
        """
        u = user or self.config.user
        full_env = self.user_env(u) | dict(env or {})
        cmd = Command(tuple(argv), u, full_env, stdin, stdout, stderr, capture, network)
        res = self.execute(cmd)
        if check and res.returncode != 0:
            raise CommandError(
                f"on {self.name} target, as {u}: {shlex.join(argv)} exited {res.returncode}",
                argv=list(res.ran or argv),
                returncode=res.returncode,
                output=(res.stderr or res.stdout).decode("utf-8", "replace")[-4000:],
            )
        return res

    def execute(self, cmd: Command) -> RunResult:
        """Run one command on the target: what each backend implements for
        :meth:`run` (which builds ``cmd`` and checks the result)."""
        raise NotImplementedError(f"the {self.name} backend runs no commands")

    def user_env(self, user: str) -> dict[str, str]:
        """The whole environment a command starts with on the target, before
        the caller's additions: the same on every backend."""
        return {
            "HOME": home_of(user),
            "USER": user,
            "LOGNAME": user,
            "PATH": PATH,
            "LANG": "C.UTF-8",
        }

    # -- files: tar streams through run(), written once for every backend ---------
    def copy_to(self, src: Path, dest: str, *, user: str | None = None) -> None:
        """Copy a host file or tree into the target.  Relative ``dest`` is
        relative to the user's home; the copy is owned by ``user``."""
        src = Path(src)
        if not src.exists():
            raise TargetError(f"copy-to-target: {src} does not exist")
        # Untarred as the user on the target: ownership follows.
        script = (
            'set -e; d="$1"; mkdir -p -- "$d"; '
            'if [ -d "$d" ]; then exec tar -C "$d" --no-same-owner -xf -; '
            'else echo "not a directory: $d" >&2; exit 1; fi'
        )
        argv = ["sh", "-c", script, "copy-to", dest or "."]
        self.send_tar(src.parent, [src.name], argv, user=user or self.config.user)

    def copy_from(self, src: str, dest: Path, *, user: str | None = None) -> None:
        """Copy a target file or tree out to ``dest`` (a directory on the host),
        owned by the invoking host user."""
        parent, _, base = src.rstrip("/").rpartition("/")
        if not base:
            raise TargetError(f"copy-from-target: cannot copy {src!r}")
        parent = parent or ("/" if src.startswith("/") else ".")
        script = 'set -e; cd -- "$1"; exec tar --numeric-owner -cf - -- "$2"'
        argv = ["sh", "-c", script, "copy-from", parent, base]
        self.receive_tar(argv, Path(dest), user=user or self.config.user)

    def send_tar(
        self,
        src_dir: Path,
        names: Sequence[str],
        argv: Sequence[str],
        *,
        user: str,
        what: str = "copy-to-target",
    ) -> None:
        """Stream a tar of ``names`` in the host directory ``src_dir`` into
        ``argv`` (which unpacks it), run on the target as ``user``."""
        tar = ["tar", "-C", os.fspath(src_dir), "--numeric-owner", "-cf", "-", "--", *names]
        try:
            with pipe_from(tar) as stream:
                res = self.run(argv, user=user, stdin=stream, capture=True, check=False)
                if res.returncode != 0:
                    msg = (res.stderr or res.stdout).decode("utf-8", "replace").strip()
                    raise TargetError(f"{what} failed: {msg[-2000:] or 'tar failed'}")
        except CommandError as e:  # the host's tar
            raise TargetError(f"{what} failed: {(e.output or e.message)[-2000:]}") from None

    def receive_tar(
        self,
        argv: Sequence[str],
        dest: Path,
        *,
        user: str,
        keep: Callable[[tarfile.TarInfo], bool] | None = None,
        what: str = "copy-from-target",
    ) -> None:
        """Run ``argv`` (which writes a tar stream) on the target as ``user``
        and unpack the stream into the host directory ``dest``, keeping only
        the members ``keep`` accepts.

        What comes out of a target is untrusted: it is unpacked here, not by a
        root tar, so no device node, set-id bit, foreign owner or path outside
        ``dest`` can be made (see :func:`_untrusted_member`).
        """
        dest.mkdir(parents=True, exist_ok=True)
        rfd, wfd = os.pipe()
        problems: list[BaseException] = []
        reader = threading.Thread(target=_unpack, args=(rfd, dest, keep, problems), daemon=True)
        reader.start()
        try:
            res = self.run(argv, user=user, stdout=wfd, capture=True, check=False)
        finally:
            os.close(wfd)
            reader.join()
        if res.returncode or problems:
            msg = str(problems[0]) if problems else res.stderr.decode("utf-8", "replace").strip()
            raise TargetError(f"{what} failed: {msg[-2000:] or 'tar failed'}")


class PrefixTarget(Target):
    """A container-like backend: a command runs as ``exec_prefix(...) + argv``.

    Copies are tar streams through that prefix, written once here.
    """

    def exec_prefix(
        self, *, user: str, env: Mapping[str, str], network: bool, interactive: bool
    ) -> list[str]:
        """argv that runs what follows it on the target as ``user``, in the
        user's home, with exactly ``env`` as its environment."""
        check_env(env)
        self.check_ready(user)
        return self.prefix(
            user=user,
            env=env,
            home=env.get("HOME") or home_of(user),
            network=network,
            interactive=interactive,
        )

    def check_ready(self, user: str) -> None:  # noqa: B027 - most need no check
        """Raise TargetError if no command can run on the target as ``user`` now."""

    @abc.abstractmethod
    def prefix(
        self, *, user: str, env: Mapping[str, str], home: str, network: bool, interactive: bool
    ) -> list[str]:
        """The backend's part of :meth:`exec_prefix`, once ``env`` and the
        target were checked: ``home`` is where the command starts."""

    def execute(self, cmd: Command) -> RunResult:
        prefix = self.exec_prefix(
            user=cmd.user, env=cmd.env, network=cmd.network, interactive=cmd.stdin is not None
        )
        argv = prefix + list(cmd.argv)
        data, stream = (cmd.stdin, None) if isinstance(cmd.stdin, bytes) else (None, cmd.stdin)
        done = host.run(
            argv,
            check=False,
            input=data,
            stdin=subprocess.DEVNULL if cmd.stdin is None else stream,
            stdout=cmd.stdout,
            stderr=cmd.stderr,
            capture=cmd.capture,
        )
        return RunResult(done.returncode, done.stdout or b"", done.stderr or b"", tuple(argv))


def _unpack(
    rfd: int,
    dest: Path,
    keep: Callable[[tarfile.TarInfo], bool] | None,
    problems: list[BaseException],
) -> None:
    """Unpack the tar stream on ``rfd`` into ``dest`` (a reader thread).  On
    an error the rest is read and dropped, so the writer never blocks."""

    def accept(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        if keep is not None and not keep(member):
            return None
        return _untrusted_member(member, path)

    with os.fdopen(rfd, "rb") as r:
        try:
            with tarfile.open(fileobj=r, mode="r|") as tar:
                tar.extractall(dest, filter=accept)
        except (tarfile.TarError, OSError) as e:
            problems.append(e)
        while r.read(1 << 16):
            pass


def _untrusted_member(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """Filter for trees copied out of a target.

    tarfile's ``tar`` filter refuses absolute names, names (and writes through
    symlinks) that leave ``dest`` and clears set-id bits; on top of that,
    device nodes and FIFOs are refused and ownership is not carried over, so
    the copy belongs to the host user running gbuild.  Symlinks themselves are
    kept as they are: the output manifest decides what a link means.
    """
    if member.ischr() or member.isblk() or member.isfifo():
        raise tarfile.FilterError(f"refusing special file {member.name!r} from the target")
    if member.islnk():
        # The "tar" filter lets a hard link name any host file (absolute or
        # ../, or through a symlink); a later member of the same name would
        # then be written through it into that file.
        real_dest = os.path.realpath(dest)
        linked = os.path.realpath(os.path.join(real_dest, member.linkname))
        if os.path.isabs(member.linkname) or not linked.startswith(real_dest + os.sep):
            raise tarfile.FilterError(
                f"refusing hard link {member.name!r} to {member.linkname!r} outside the copy"
            )
    filtered = tarfile.tar_filter(member, dest)
    return filtered.replace(uid=None, gid=None, uname=None, gname=None, deep=False)  # type: ignore[arg-type]
