"""The one interface every backend implements, and what the build pipeline uses.

A :class:`Target` is one clean build machine (container, sandbox or VM) made
from a base image.  The gbuild pipeline is written against this class only and
never asks which backend it has.  Container-like backends only supply an argv
prefix (:class:`PrefixTarget`); copying in and out is written once here, as a
tar stream through that prefix.  VM backends share one SSH implementation.

Lifecycle, as the classic ``libexec`` tools split it::

    make_base()  make-base-vm          build base-<suite>-<arch>[...]
    reset()      make-clean-vm         fresh target from the base
    start()      start-target          boot / create it
    wait_ready() (gbuild)              until a command runs on it
    run()        on-target             a command as a user, exit status back
    copy_to()    copy-to-target
    copy_from()  copy-from-target
    stop()       stop-target           power off / remove; idempotent

``session()`` stacks reset/start/wait_ready and always stops on the way out,
Ctrl-C included.  State needed between separate processes (the libexec tools
run one per command) lives in ``var/``.
"""

from __future__ import annotations

import abc
import os
import shlex
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar

from gitian import log
from gitian.errors import CommandError, TargetError
from gitian.home import Home


@dataclass(frozen=True)
class TargetConfig:
    """Everything a backend needs, parsed at the edge (CLI/env) once."""

    home: Home
    suite: str
    arch: str  # i386 | amd64 (linux64 maps to amd64 images)
    distro: str = "ubuntu"  # also the build user's name
    memory_mib: int = 2000  # VMEM / gbuild -m
    nprocs: int = 2  # NPROCS / gbuild -j
    # Backend-specific settings from the classic environment variables.
    lxc_bridge: str | None = None  # LXC_BRIDGE (None: bring up LXC's own NAT bridge)
    lxc_guest_ip: str = "10.0.2.5"  # LXC_GUEST_IP
    host_ip: str = "10.0.2.2"  # GITIAN_HOST_IP
    lxc_execute: bool = False  # LXC_EXECUTE
    mirror_host: str | None = None  # MIRROR_HOST (an apt-cacher-ng on port 3142)
    allow_privileged: bool = False  # GITIAN_ALLOW_PRIVILEGED
    kvm_binary: str | None = None  # KVM
    ssh_port: int = 2223  # VM_SSH_PORT
    container_cli: str = "docker"  # GITIAN_CONTAINER_CLI: docker | podman
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def user(self) -> str:
        """The build user on the target (classic: ``$DISTRO``, else ``ubuntu``)."""
        return self.distro or "ubuntu"

    @property
    def user_home(self) -> str:
        return f"/home/{self.user}"

    @property
    def image_arch(self) -> str:
        return "amd64" if self.arch == "linux64" else self.arch


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


class Target(abc.ABC):
    """One backend.  Subclasses set ``name`` and implement the abstract methods."""

    name: ClassVar[str]
    #: the base is reverted for each build (``reset`` gives a clean target)
    can_revert: ClassVar[bool] = True
    #: the backend binds ``home.package_cache`` to /var/cache/apt/archives
    #: itself; otherwise the pipeline copies .debs in and out
    binds_package_cache: ClassVar[bool] = False

    def __init__(self, config: TargetConfig) -> None:
        self.config = config

    # -- host checks -------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def unavailable_reason(cls, *, for_base: bool = False) -> str | None:
        """None if this host can run the backend, else one line saying what
        is missing and how to get it."""

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
    def session(self, *, reset: bool = True, keep: bool = False) -> Iterator[Target]:
        """Reset (unless ``reset`` is false), start and wait; always stop unless ``keep``."""
        self.stop()
        if reset:
            self.reset()
        try:
            self.start()
            self.wait_ready()
            yield self
        finally:
            if not keep:
                self.stop()

    # -- commands and files -------------------------------------------------
    @abc.abstractmethod
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
        that user's home, with ``env`` added.

        ``stdin`` may be bytes or a file.  ``stdout``/``stderr`` may be files
        to stream into; ``capture`` collects them instead.  ``network`` asks
        for network access (apt steps); backends that can cut the network
        otherwise do so.  A non-zero exit raises :class:`CommandError` when
        ``check`` is true; either way the status is returned.
        """

    @abc.abstractmethod
    def copy_to(self, src: Path, dest: str, *, user: str | None = None) -> None:
        """Copy a host file or tree into the target.  Relative ``dest`` is
        relative to the user's home; the copy is owned by ``user``."""

    @abc.abstractmethod
    def copy_from(self, src: str, dest: Path, *, user: str | None = None) -> None:
        """Copy a target file or tree out to ``dest`` (a directory on the host),
        owned by the invoking host user."""


class PrefixTarget(Target):
    """A container-like backend: a command runs as ``exec_prefix(...) + argv``.

    Copies are tar streams through that prefix, written once here.
    """

    @abc.abstractmethod
    def exec_prefix(
        self, *, user: str, env: Mapping[str, str], network: bool, interactive: bool
    ) -> list[str]:
        """argv that runs what follows it on the target as ``user``, in the
        user's home, with exactly ``env`` added to a clean login environment."""

    def user_env(self, user: str) -> dict[str, str]:
        home = "/root" if user == "root" else f"/home/{user}"
        return {
            "HOME": home,
            "USER": user,
            "LOGNAME": user,
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
        }

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
        u = user or self.config.user
        full_env = self.user_env(u)
        if env:
            full_env.update(env)
        prefix = self.exec_prefix(
            user=u, env=full_env, network=network, interactive=stdin is not None
        )
        cmd = prefix + list(argv)
        log.debug("+ " + shlex.join(cmd))
        data = stdin if isinstance(stdin, bytes) else None
        stdin_arg: Any = (
            subprocess.PIPE
            if data is not None
            else (stdin if stdin is not None else subprocess.DEVNULL)
        )
        out = subprocess.PIPE if capture and stdout is None else stdout
        err = subprocess.PIPE if capture and stderr is None else stderr
        proc = subprocess.Popen(cmd, stdin=stdin_arg, stdout=out, stderr=err)
        try:
            o, e = proc.communicate(input=data)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        res = RunResult(proc.returncode, o or b"", e or b"")
        if check and proc.returncode != 0:
            raise CommandError(
                f"on {self.name} target, as {u}: {shlex.join(argv)} exited {proc.returncode}",
                argv=cmd,
                returncode=proc.returncode,
                output=(e or o or b"").decode("utf-8", "replace")[-4000:],
            )
        return res

    def copy_to(self, src: Path, dest: str, *, user: str | None = None) -> None:
        u = user or self.config.user
        src = Path(src)
        if not src.exists():
            raise TargetError(f"copy-to-target: {src} does not exist")
        # tar on the host, untar as the user on the target: ownership follows.
        tar = ["tar", "-C", os.fspath(src.parent), "--numeric-owner", "-cf", "-", "--", src.name]
        dest_q = dest or "."
        script = (
            'set -e; d="$1"; n="$2"; mkdir -p -- "$d"; '
            'if [ -d "$d" ]; then tar -C "$d" --no-same-owner -xf -; '
            'else echo "not a directory: $d" >&2; exit 1; fi'
        )
        self._pipe_tar(tar, ["sh", "-c", script, "copy-to", dest_q, src.name], user=u, into=True)

    def copy_from(self, src: str, dest: Path, *, user: str | None = None) -> None:
        u = user or self.config.user
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        parent, _, base = src.rstrip("/").rpartition("/")
        script = 'set -e; cd -- "${1:-.}"; tar --numeric-owner -cf - -- "$2"'
        where = parent or ("/" if src.startswith("/") else ".")
        remote = self.exec_prefix(
            user=u, env=self.user_env(u), network=False, interactive=False
        ) + ["sh", "-c", script, "copy-from", where, base]
        log.debug("+ " + shlex.join(remote) + " | (extract into " + os.fspath(dest) + ")")
        # What comes out of a target is untrusted: extract it here, not with a
        # root tar, so no device node, set-id bit, foreign owner or path
        # outside ``dest`` can be created (see _untrusted_member).
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                remote, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err
            )
            assert proc.stdout is not None
            problem = None
            try:
                with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                    tar.extractall(dest, filter=_untrusted_member)
            except (tarfile.TarError, OSError) as e:
                problem = str(e)
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            finally:
                proc.stdout.close()
            if problem is not None and proc.poll() is None:
                proc.kill()
            proc.wait()
            err.seek(0)
            msg = err.read().decode("utf-8", "replace").strip()
        if proc.returncode or problem:
            raise TargetError(
                f"copy-from-target {src} failed: {(problem or msg or 'tar failed')[-2000:]}"
            )

    def _pipe_tar(
        self, host_cmd: list[str], target_cmd: list[str], *, user: str, into: bool
    ) -> None:
        env = self.user_env(user)
        prefix = self.exec_prefix(user=user, env=env, network=False, interactive=into)
        remote = prefix + target_cmd
        log.debug("+ " + shlex.join(host_cmd) + (" | " if into else " <| ") + shlex.join(remote))
        if into:
            first, second = host_cmd, remote
        else:
            first, second = remote, host_cmd
        p1 = subprocess.Popen(
            first, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            p2 = subprocess.Popen(
                second, stdin=p1.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            assert p1.stdout is not None
            p1.stdout.close()
            _, e2 = p2.communicate()
            _, e1 = p1.communicate()
        except BaseException:
            p1.kill()
            p1.wait()
            raise
        if p1.returncode or p2.returncode:
            what = "copy-to-target" if into else "copy-from-target"
            msg = (e1 or b"").decode("utf-8", "replace") + (e2 or b"").decode("utf-8", "replace")
            raise TargetError(f"{what} failed: {msg.strip()[-2000:] or 'tar failed'}")


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
