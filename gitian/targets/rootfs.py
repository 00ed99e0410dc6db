"""Directory bases shared by the container backends (bubblewrap and LXC).

A base is a root file system in ``base-<suite>-<arch>/`` of the gitian home,
bootstrapped once (mmdebstrap, else debootstrap), fixed up for containers
(``target-bin/bootstrap-fixup``) and upgraded once (``upgrade-system.sh``), so
that every clean target already carries ``/var/cache/gitian/initial-upgrade``.

A clean target is an overlayfs mount ``target-<suite>-<arch>/`` whose lower
layer is the base and whose upper layer lives in ``var/``: making one costs a
``mount``, and the base is never written after it is made.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from gitian import bootstrap, log
from gitian.errors import TargetError, ToolMissingError, UsageError
from gitian.home import Home, target_bin
from gitian.run import is_root, remove_tree, require, run, signals_held, which
from gitian.targets.base import BaseOptions, PrefixTarget, TargetConfig

ARCHES = ("amd64", "i386")
# Characters that would break overlayfs' option string or LXC's config syntax.
_BAD_PATH_CHARS = set(",:\n=\\ ")


def check_path(p: Path, what: str) -> None:
    bad = _BAD_PATH_CHARS.intersection(os.fspath(p))
    if bad:
        raise UsageError(
            f"{what} {p} contains {''.join(sorted(bad))!r}, which an overlay mount cannot take",
            hint="use a gitian home whose path has no commas, colons, spaces or '='",
        )


def missing_for_base_host() -> str | None:
    """What the host lacks to build a directory base, as one line, or None."""
    if not is_root():
        return "making a base needs root (run make-base-vm as root)"
    if bootstrap.bootstrap_tool() is None:
        return "neither mmdebstrap nor debootstrap is installed (apt-get install mmdebstrap)"
    for prog, pkg in (("unshare", "util-linux"), ("chroot", "coreutils")):
        if which(prog) is None:
            return f"{prog} is missing (apt-get install {pkg})"
    return None


def missing_for_targets() -> str | None:
    """What the host lacks to make overlay targets, as one line, or None."""
    try:
        fs = Path("/proc/filesystems").read_text()
    except OSError:
        fs = ""
    if "overlay" not in fs.split():
        return "the kernel has no overlayfs for clean targets (modprobe overlay)"
    return None


@dataclass(frozen=True)
class BaseSpec:
    """What goes into a directory base."""

    distro: str
    suite: str
    arch: str
    mirror: str | None  # None: the bootstrap tool's default
    packages: tuple[str, ...]
    user: str

    def fixup_env(self, *, container: bool, mirror_host: str | None = None) -> dict[str, str]:
        """What bootstrap-fixup reads for this base."""
        return bootstrap.fixup_env(
            distro=self.distro,
            suite=self.suite,
            user=self.user,
            container=container,
            mirror=self.mirror,
            mirror_host=mirror_host,
        )


def spec_for(options: BaseOptions, *, mirror_host: str | None) -> BaseSpec:
    if options.arch not in ARCHES:
        raise UsageError(f"--arch must be one of {', '.join(ARCHES)}, not {options.arch!r}")
    if not options.suite.isalnum() or not options.distro.isalnum():
        raise UsageError(f"bad --suite/--distro: {options.suite!r} {options.distro!r}")
    if options.mirror is not None and not re.match(r"(https?|file)://[^\s]+\Z", options.mirror):
        raise UsageError(f"--mirror must be an http(s):// or file:// URI, not {options.mirror!r}")
    mirror = bootstrap.choose_mirror(
        options.distro, explicit=options.mirror, mirror_host=mirror_host
    )
    pkgs = [*bootstrap.base_packages(options.distro), *options.extra_packages]
    return BaseSpec(
        distro=options.distro,
        suite=options.suite,
        arch=options.arch,
        mirror=mirror,
        packages=tuple(dict.fromkeys(pkgs)),
        user=options.distro or "ubuntu",
    )


def bootstrap_argv(spec: BaseSpec, dest: Path, tool: str) -> list[str]:
    """The bootstrap command line for ``spec`` into ``dest``."""
    include = ",".join(spec.packages)
    if tool == "mmdebstrap":
        cmd = [
            "mmdebstrap",
            "--mode=root",
            "--variant=minbase",
            f"--architectures={spec.arch}",
            f"--components={','.join(bootstrap.components(spec.distro))}",
            f"--include={include}",
            # keep the downloaded .debs: they seed the host's package cache
            "--skip=cleanup/apt/cache",
            "--skip=essential/unlink",
            spec.suite,
            os.fspath(dest),
        ]
    else:
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--arch={spec.arch}",
            f"--components={','.join(bootstrap.components(spec.distro))}",
            f"--include={include}",
            spec.suite,
            os.fspath(dest),
        ]
    if spec.mirror:
        cmd.append(spec.mirror)
    return cmd


def contained(argv: list[str]) -> list[str]:
    """``argv`` in mount and pid namespaces of its own.

    If the bootstrap is interrupted, even by SIGKILL, everything it started
    dies with it and whatever it mounted in the new root goes away, so the
    half-made tree can be removed safely.
    """
    return ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--", *argv]


def make_base(home: Home, options: BaseOptions, *, mirror_host: str | None) -> Path:
    """Build ``base-<suite>-<arch>/`` (bootstrap, container fixup, one upgrade).

    Built under a temporary name and renamed at the end, so an interrupted
    run never leaves something that looks like a base.
    """
    spec = spec_for(options, mirror_host=mirror_host)
    dest = home.base(spec.suite, spec.arch)
    check_path(dest, "base")
    if dest.exists() or dest.is_symlink():
        unfit = base_unfit(dest, spec)
        if unfit is None and not options.force:
            # bubblewrap and LXC use the same base: making one for the other is done.
            log.info(
                f"{dest.name} is already a base for {spec.distro} {spec.suite} {spec.arch}, "
                "shared by bubblewrap and LXC; kept (--force makes it anew)"
            )
            return dest
        if unfit is not None and not options.force:
            raise UsageError(
                f"{dest} already exists but {unfit}",
                hint="make-base-vm --force makes the base anew (the old one is removed "
                "once the new one is complete)",
            )
        if Overlay.for_home(home, spec.suite, spec.arch).mounted:
            raise UsageError(
                f"a target made from {dest.name} is running; stop it first (stop-target)"
            )
    reason = missing_for_base_host()
    if reason:
        raise ToolMissingError(f"cannot make a base: {reason}")
    tool = bootstrap.bootstrap_tool()
    assert tool is not None
    home.root.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.new.{os.getpid()}")
    try:
        with log.step(f"Bootstrapping {spec.distro} {spec.suite} {spec.arch} with {tool}"):
            if spec.mirror is None:
                log.info("mirror: the bootstrap tool's default")
            else:
                log.info(f"mirror: {spec.mirror}")
            run(contained(bootstrap_argv(spec, tmp, tool)))
        fixup(tmp, spec, container=True)
        upgrade(tmp)
        harvest_debs(tmp, home.package_cache)
        old = dest.with_name(f".{dest.name}.old.{os.getpid()}")
        with signals_held():
            replacing = dest.exists() or dest.is_symlink()
            if replacing:
                os.rename(dest, old)
            os.rename(tmp, dest)
    except BaseException:
        _remove_tree(tmp)
        raise
    if replacing:
        _remove_tree(old)
    log.info(f"base ready: {dest}")
    return dest


def base_unfit(dest: Path, spec: BaseSpec) -> str | None:
    """Why the existing ``dest`` cannot serve as the base ``spec`` asks for, or None."""
    if not dest.is_dir():
        return "is not a directory"
    if not (dest / "etc").is_dir():
        return "is not a root file system (no etc/)"
    if spec.user not in passwd_users(dest):
        return f"has no build user {spec.user!r} (it was made for another --distro)"
    return None


def fixup(root: Path, spec: BaseSpec, *, container: bool) -> None:
    script = (target_bin() / "bootstrap-fixup").read_bytes()
    with log.step("Fixing up the base (bootstrap-fixup)"):
        env = spec.fixup_env(container=container)
        bootstrap.chroot_run(root, ["sh", "-s"], env=env, input=script)


def upgrade(root: Path) -> None:
    script = (target_bin() / "upgrade-system.sh").read_bytes()
    with log.step("Upgrading the base once (upgrade-system.sh)"), _host_resolv(root):
        bootstrap.chroot_run(root, ["bash", "-s"], input=script)


def harvest_debs(root: Path, cache: Path) -> None:
    """Move the .debs the bootstrap and upgrade downloaded into the host cache."""
    archives = root / "var/cache/apt/archives"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "partial").mkdir(exist_ok=True)
    n = 0
    for deb in archives.glob("*.deb"):
        target = cache / deb.name
        if target.exists():
            deb.unlink()
        else:
            shutil.move(os.fspath(deb), os.fspath(target))
        n += 1
    log.info(f"{n} .deb files kept in {cache}")


class _host_resolv:
    """Give the chroot the host's resolv.conf for the duration (apt needs DNS)."""

    def __init__(self, root: Path) -> None:
        self.path = root / "etc/resolv.conf"
        self.saved: bytes | None = None
        self.was_link: str | None = None

    def __enter__(self) -> None:
        if self.path.is_symlink():
            self.was_link = os.readlink(self.path)
            self.path.unlink()
        elif self.path.exists():
            self.saved = self.path.read_bytes()
        host = Path("/etc/resolv.conf")
        if host.exists():
            self.path.write_bytes(host.read_bytes())

    def __exit__(self, *exc: object) -> None:
        if self.was_link is not None:
            self.path.unlink(missing_ok=True)
            os.symlink(self.was_link, self.path)
        elif self.saved is not None:
            self.path.write_bytes(self.saved)
        else:
            self.path.unlink(missing_ok=True)


def _remove_tree(p: Path) -> None:
    if p.is_symlink() or p.is_file():
        p.unlink()
    elif p.exists():
        # Never recurse into something still mounted (an interrupted bootstrap's
        # /dev or /proc): that would delete the host's files.
        left = mounts_below(p)
        if left:
            raise TargetError(
                f"not removing {p}: {left[0]} is still mounted",
                hint=f"unmount it (umount -R {left[0]}) and remove {p} by hand",
            )
        remove_tree(p)  # any depth: a build can leave trees deeper than Python recurses


def mounts_below(path: Path) -> list[str]:
    """Mount points at or below ``path``."""
    want = os.fspath(path.resolve())
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 4:
            mp = _unescape(fields[4])
            if mp == want or mp.startswith(want + "/"):
                found.append(mp)
    return found


# -- overlay targets --------------------------------------------------------

#: the directory of an installed-packages layer that holds its files
LAYER_TREE = "tree"


def base_identity(root: Path) -> dict[str, str]:
    """What identifies the directory base ``root``: its package database
    (what is installed, and when dpkg last wrote it, i.e. when the base was
    made), its apt configuration (where packages come from) and whether it
    carries the upgrade marker.  Symlinks are read as links, never followed:
    they would resolve on the host."""
    status = root / "var/lib/dpkg/status"
    try:
        made = os.lstat(status).st_mtime_ns
    except FileNotFoundError:
        made = 0
    apt = hashlib.sha256()
    for rel in ("var/lib/dpkg/arch", *_tree_files(root, "etc/apt")):
        apt.update(os.fsencode(rel) + b"\0" + _file_or_link(root / rel) + b"\0")
    return {
        "kind": "directory",
        "dpkg": hashlib.sha256(_file_or_link(status)).hexdigest(),
        "made": str(made),
        "apt": apt.hexdigest(),
        "upgraded": str(os.path.lexists(root / bootstrap.UPGRADE_MARKER.lstrip("/"))),
    }


def _tree_files(root: Path, rel: str) -> list[str]:
    if (root / rel).is_symlink():
        return [rel]
    out = []
    for dirpath, dirnames, filenames in os.walk(root / rel):  # never follows links
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(Path(dirpath, d))]:
            out.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(out)


def _file_or_link(p: Path) -> bytes:
    """A regular file's bytes, a symlink's target, else b''."""
    try:
        if p.is_symlink():
            return b"-> " + os.fsencode(os.readlink(p))
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return b""
    with os.fdopen(fd, "rb") as f:
        return f.read()


def is_mounted(path: Path) -> bool:
    want = os.fspath(path)
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 4 and _unescape(fields[4]) == want:
            return True
    return False


def _unescape(s: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and s[i + 1 : i + 4].isdigit() and len(s[i + 1 : i + 4]) == 3:
            out.append(chr(int(s[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class Overlay:
    """An overlayfs clean target: ``mountpoint`` = ``lower`` + a throwaway upper layer."""

    lower: Path
    mountpoint: Path
    state: Path  # holds upper/ and work/

    @classmethod
    def for_home(cls, home: Home, suite: str, arch: str) -> Overlay:
        o = cls(
            lower=home.base(suite, arch),
            mountpoint=home.target(suite, arch),
            state=home.var / "overlay" / f"{suite}-{arch}",
        )
        for p, what in ((o.lower, "base"), (o.mountpoint, "target"), (o.state, "overlay")):
            check_path(p, what)
        return o

    @property
    def upper(self) -> Path:
        return self.state / "upper"

    @property
    def work(self) -> Path:
        return self.state / "work"

    @property
    def stack_file(self) -> Path:
        """Names the installed-packages layer the target stands on, if any."""
        return self.state / "layer"

    def stacked(self) -> list[Path]:
        """The layers between the base and the upper layer, top first."""
        try:
            text = self.stack_file.read_text()
        except FileNotFoundError:
            return []
        return [Path(line) for line in text.splitlines() if line]

    def stack(self, layers: list[Path]) -> None:
        """Stand the next mount on ``layers`` (top first) over the base."""
        for p in layers:
            check_path(p, "layer")
        self.state.mkdir(parents=True, exist_ok=True)
        if layers:
            self.stack_file.write_text("".join(f"{os.fspath(p)}\n" for p in layers))
        else:
            self.stack_file.unlink(missing_ok=True)

    @property
    def has_base(self) -> bool:
        return (self.lower / "etc").is_dir()

    def require_base(self, make_hint: str) -> None:
        if not self.has_base:
            raise TargetError(f"no base at {self.lower}", hint=make_hint)

    @property
    def mounted(self) -> bool:
        return is_mounted(self.mountpoint)

    def reset(self) -> None:
        """Throw away the upper layer: the next mount is a clean target."""
        self.unmount()
        for p in (self.upper, self.work):
            _remove_tree(p)
        self.stack_file.unlink(missing_ok=True)

    def mount(self) -> None:
        """Mount the target (keeping an existing upper layer, as ``gbuild -i`` wants)."""
        if self.mounted:
            return
        require("mount", "umount", why="for overlay targets")
        self.upper.mkdir(parents=True, exist_ok=True)
        # A work dir left by an interrupted mount makes overlayfs refuse it.
        _remove_tree(self.work)
        self.work.mkdir(parents=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        layers = self.stacked()
        for p in layers:
            if not p.is_dir():
                raise TargetError(
                    f"the installed-packages layer {p} this target stands on is gone",
                    hint="make a clean target (make-clean-vm, or gbuild without -i)",
                )
        lower = ":".join(os.fspath(p) for p in [*layers, self.lower])
        opts = f"lowerdir={lower},upperdir={self.upper},workdir={self.work}"
        res = run(
            ["mount", "-t", "overlay", "overlay", "-o", opts, os.fspath(self.mountpoint)],
            check=False,
            capture=True,
        )
        if res.returncode != 0:
            raise TargetError(
                f"cannot mount the overlay target at {self.mountpoint}: "
                + (res.stderr or b"").decode("utf-8", "replace").strip(),
                hint="overlay mounts need root and a home on a file system that "
                "overlayfs accepts as upper layer (ext4, xfs, btrfs, tmpfs)",
            )

    def unmount(self) -> None:
        """Unmount if mounted; a busy mount is detached lazily after 5 s of retries."""
        if not self.mounted:
            return
        deadline = time.monotonic() + 5
        while True:
            res = run(["umount", os.fspath(self.mountpoint)], check=False, capture=True)
            if res.returncode == 0 or not self.mounted:
                return
            if time.monotonic() > deadline:
                log.warn(f"{self.mountpoint} is busy; detaching it lazily")
                run(["umount", "--lazy", os.fspath(self.mountpoint)])
                return
            time.sleep(0.2)


# -- the part bubblewrap and LXC targets share -------------------------------


def passwd_users(root: Path) -> set[str]:
    try:
        text = (root / "etc/passwd").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    return {line.split(":", 1)[0] for line in text.splitlines() if ":" in line}


def drop_privileges(user: str) -> list[str]:
    """argv (run inside the target) that becomes ``user`` with its groups.

    As root outside, a user namespace plus ``--uid`` would leave files
    unmapped, so privileges are dropped inside with setpriv (util-linux is
    essential, so every base has it).  ``--`` also keeps an argv[0] with
    ``=`` in it from being read as an assignment by ``env``.
    """
    if user == "root":
        return ["setpriv", "--"]
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]


class OverlayTarget(PrefixTarget):
    """A container on an overlay of a directory base (bubblewrap, LXC)."""

    binds_package_cache: ClassVar[bool] = True

    def __init__(self, config: TargetConfig) -> None:
        super().__init__(config)
        self._layer: Path | None = None

    @property
    def overlay(self) -> Overlay:
        return Overlay.for_home(self.config.home, self.config.suite, self.config.image_arch)

    @property
    def rootfs(self) -> Path:
        return self.overlay.mountpoint

    def _make_base_hint(self) -> str:
        c = self.config
        return (
            f"make it with: make-base-vm --{self.name} --distro {c.distro} "
            f"--suite {c.suite} --arch {c.image_arch}"
        )

    def make_base(self, options: BaseOptions) -> None:
        make_base(self.config.home, options, mirror_host=self.config.mirror_host)

    def has_base(self) -> bool:
        return self.overlay.has_base

    def reset(self) -> None:
        self.stop()
        self.overlay.require_base(self._make_base_hint())
        self.overlay.reset()
        if self._layer is not None:
            self.overlay.stack([self._layer / LAYER_TREE])

    # -- installed-packages layers: the upper directory, stacked on the base ----------
    def base_identity(self) -> dict[str, str] | None:
        if not self.has_base():
            return None
        return base_identity(self.overlay.lower)

    def from_layer(self, layer: Path | None) -> None:
        if layer is not None and not (layer / LAYER_TREE).is_dir():
            raise TargetError(f"the layer {layer.name} has no {LAYER_TREE}/")
        self._layer = layer

    def keep_layer(self, dest: Path, name: str) -> int:
        """The upper directory becomes the layer: a rename, no copy."""
        self.stop()
        ov = self.overlay
        if ov.stacked():
            raise TargetError("a layer is only kept of a target made from the base")
        os.rename(ov.upper, dest / LAYER_TREE)
        _remove_tree(ov.work)
        return 0

    def drop_layer(self, layer: Path) -> None:
        tree = os.fspath(layer / LAYER_TREE)
        try:
            mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        except OSError:
            mounts = []
        for line in mounts:
            if f"lowerdir={tree}:" in line or f":{tree}:" in line:
                raise TargetError(
                    f"a mounted target stands on it ({_unescape(line.split()[4])})",
                    hint="stop that target first (stop-target)",
                )

    def start(self) -> None:
        ov = self.overlay
        ov.require_base(self._make_base_hint())
        ov.mount()
        self.config.home.package_cache.joinpath("partial").mkdir(parents=True, exist_ok=True)
        try:
            self._start()
            if self.config.mirror_host:
                self._mirror_fixup(self.config.mirror_host)
        except BaseException:
            self._stop()
            ov.unmount()
            raise

    def _mirror_fixup(self, mirror_host: str) -> None:
        """As the classic make-clean-vm: point apt at MIRROR_HOST's apt-cacher-ng
        (bootstrap-fixup; the rest of the fixup is already in the base)."""
        self.wait_ready()
        script = (target_bin() / "bootstrap-fixup").read_bytes()
        c = self.config
        env = bootstrap.fixup_env(
            distro=c.distro, suite=c.suite, user=c.user, container=True, mirror_host=mirror_host
        )
        self.run(["sh", "-s"], user="root", env=env, stdin=script, capture=True)

    def stop(self) -> None:
        try:
            self._stop()
        finally:
            self.overlay.unmount()

    def _start(self) -> None:  # noqa: B027 - bubblewrap has nothing to start
        """Backend part of start(), after the overlay is mounted."""

    def _stop(self) -> None:  # noqa: B027
        """Backend part of stop(), before the overlay is unmounted."""

    def check_ready(self, user: str) -> None:
        root = self.rootfs
        if not is_mounted(root):
            raise TargetError(
                f"the {self.name} target {root} is not started",
                hint="run make-clean-vm and start-target first",
            )
        users = passwd_users(root)
        if user not in users:
            raise TargetError(
                f"no user {user!r} on the target {root}",
                hint="the build user is named after the base's distro: set DISTRO "
                "(or the descriptor's distro:) to the --distro the base was made with",
            )
