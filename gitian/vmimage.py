"""Bootable VM base images with tools a current Debian ships (SPEC §7, improved).

The classic KVM path needed ``vmbuilder``.  Ours:

1. ``mmdebstrap`` a root directory with the SPEC §7 package set plus a kernel,
   systemd, udev, openssh-server and iproute2;
2. customise it on the host (build user, root's and the user's
   ``authorized_keys`` from ``var/id_rsa.pub``, fstab, hostname, DHCP through
   systemd-networkd, resolv.conf for qemu's user network, units a build VM
   does not need masked, the one-time upgrade marker);
3. ``mkfs.ext4 -d`` the directory into a sparse raw disk of ``--disksize`` MB
   (no mount, no loop device);
4. ``qemu-img convert`` it to ``base-<suite>-<arch>.qcow2`` and keep the
   kernel and initrd beside it (``.vmlinuz`` / ``.initrd``) for direct kernel
   boot: no firmware disk probing, no bootloader.

The guest's disk is ``/dev/vda`` with the file system directly on it (no
partition table), so the kernel command line names ``root=/dev/vda``.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from gitian import bootstrap, log
from gitian.errors import ToolMissingError, UsageError
from gitian.home import Home, target_bin
from gitian.run import is_root, require, run, write_atomic

#: the Debian kernel flavour per guest architecture
KERNEL_FLAVOUR = {"amd64": "amd64", "i386": "686-pae"}
#: packages every VM base gets on top of the SPEC §7 set
VM_PACKAGES = ("systemd-sysv", "udev", "openssh-server", "iproute2", "sudo", "kmod", "lz4")
#: what the initrd needs to mount /dev/vda: the Debian default (MODULES=most,
#: zstd) is a 36 MB initrd that takes half a minute to unpack under TCG
INITRD_MODULES = ("virtio_pci", "virtio_blk", "ext4", "crc32c_generic")
#: units a throwaway build VM does not need (they only slow the boot or
#: start background work in the middle of a build)
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "man-db.timer",
    "dpkg-db-backup.timer",
    "systemd-networkd-wait-online.service",
    "getty@tty1.service",
    "systemd-timesyncd.service",
    "cron.service",
    "getty-static.service",
)
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_SUITE_RE = re.compile(r"^[a-z][a-z0-9-]{0,40}$")


@dataclass(frozen=True)
class ImageSpec:
    """What to build; parsed and checked before anything starts."""

    distro: str
    suite: str
    arch: str
    disksize_mb: int
    mirror: str | None = None
    extra_packages: tuple[str, ...] = ()

    def check(self) -> None:
        if not _NAME_RE.match(self.distro):
            raise UsageError(f"--distro {self.distro!r} is not a valid distro/user name")
        if not _SUITE_RE.match(self.suite):
            raise UsageError(f"--suite {self.suite!r} is not a valid suite name")
        if self.arch not in KERNEL_FLAVOUR:
            raise UsageError(
                f"--arch {self.arch!r} is not supported for VM images "
                f"(choose from {', '.join(KERNEL_FLAVOUR)})"
            )
        if self.disksize_mb < 1024:
            raise UsageError(f"--disksize {self.disksize_mb} MB is too small (at least 1024)")

    @property
    def user(self) -> str:
        return self.distro

    def packages(self) -> list[str]:
        pkgs = [
            *bootstrap.base_packages(self.distro),
            f"linux-image-{KERNEL_FLAVOUR[self.arch]}",
            *VM_PACKAGES,
            *self.extra_packages,
        ]
        return list(dict.fromkeys(pkgs))


@dataclass(frozen=True)
class ImagePaths:
    """The files one base consists of."""

    disk: Path  # base-<suite>-<arch>.qcow2
    kernel: Path  # base-<suite>-<arch>.vmlinuz
    initrd: Path  # base-<suite>-<arch>.initrd

    @classmethod
    def of(cls, home: Home, suite: str, arch: str) -> ImagePaths:
        return cls(
            disk=home.base(suite, arch, ".qcow2"),
            kernel=home.base(suite, arch, ".vmlinuz"),
            initrd=home.base(suite, arch, ".initrd"),
        )

    def missing(self) -> list[Path]:
        return [p for p in (self.disk, self.kernel, self.initrd) if not p.is_file()]


def unavailable_reason() -> str | None:
    """What this host lacks to build a VM base, or None."""
    try:
        require("mmdebstrap", "mkfs.ext4", "qemu-img", "ssh-keygen", why="to build a VM base")
    except ToolMissingError as e:
        return f"{e.message}; {e.hint}"
    if not is_root():
        return "building a VM base needs root (mmdebstrap must keep file owners for mkfs.ext4 -d)"
    return None


def ensure_ssh_key(home: Home) -> Path:
    """``var/id_rsa`` (and ``.pub``), made on first use; an existing key is kept.

    A key made here is ed25519 (fast, small) but keeps the classic file name,
    so tools and habits that expect ``var/id_rsa`` keep working.
    """
    key = home.var / "id_rsa"
    pub = home.var / "id_rsa.pub"
    if key.is_file() and pub.is_file():
        return key
    if key.is_file():
        # Private key without its public half: derive it.
        out = run(["ssh-keygen", "-y", "-f", key], capture=True).stdout
        write_atomic(pub, out)
        return key
    require("ssh-keygen", why="to make the VM's SSH key")
    home.var.mkdir(parents=True, exist_ok=True)
    tmp = home.var / f".id_rsa.tmp.{os.getpid()}"
    try:
        run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gitian", "-f", tmp],
            capture=True,
        )
        os.replace(tmp.with_name(tmp.name + ".pub"), pub)
        os.replace(tmp, key)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".pub").unlink(missing_ok=True)
    return key


def mmdebstrap_argv(spec: ImageSpec, rootdir: Path) -> list[str]:
    """The bootstrap command.  Hooks are fixed strings: no user value goes into a shell."""
    marker = bootstrap.UPGRADE_MARKER
    marker_dir = posixpath.dirname(marker)
    argv = [
        "mmdebstrap",
        "--mode=root",
        "--variant=minbase",
        f"--architectures={spec.arch}",
        f"--components={','.join(bootstrap.components(spec.distro))}",
        f"--include={','.join(spec.packages())}",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        # Keep the downloaded .debs: grab-packages.sh hashes the installed
        # packages' .debs and would otherwise download them all again.
        "--skip=cleanup/apt/cache",
        # SPEC §3 improve: the base is upgraded once, so no clean target
        # upgrades again; the marker tells upgrade-system.sh it was done.
        '--customize-hook=chroot "$1" apt-get -y -q -o Dpkg::Options::=--force-confold '
        "dist-upgrade",
        f'--customize-hook=mkdir -p "$1{marker_dir}" && touch "$1{marker}"',
        # A small initrd for direct kernel boot: only what mounts the root.
        "--customize-hook=printf 'MODULES=list\\nCOMPRESS=lz4\\n' "
        '> "$1/etc/initramfs-tools/conf.d/gitian"',
        "--customize-hook=printf '%s\\n' "
        + " ".join(INITRD_MODULES)
        + ' >> "$1/etc/initramfs-tools/modules"',
        '--customize-hook=chroot "$1" update-initramfs -u -k all',
        spec.suite,
        os.fspath(rootdir),
    ]
    if spec.mirror:
        argv.append(spec.mirror)
    return argv


#: files a VM base gets as they are (path, text)
VM_FILES = (
    ("/etc/hostname", "gitian\n"),
    (
        "/etc/hosts",
        "127.0.0.1\tlocalhost\n127.0.1.1\tgitian\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    ),
    ("/etc/fstab", "/dev/vda\t/\text4\trw,errors=remount-ro\t0\t1\n"),
    # qemu's user network: DHCP on the first NIC, DNS at 10.0.2.3.
    (
        "/etc/systemd/network/10-gitian.network",
        "[Match]\nName=e*\n\n[Network]\nDHCP=ipv4\nIPv6AcceptRA=no\nLinkLocalAddressing=no\n",
    ),
    ("/etc/resolv.conf", "nameserver 10.0.2.3\n"),
    (
        "/etc/ssh/sshd_config.d/gitian.conf",
        "UseDNS no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n",
    ),
)


def customise(root: Path, spec: ImageSpec, pubkey: bytes) -> None:
    """Make the bootstrapped tree a bootable, reachable build VM."""
    for rel, text in VM_FILES:
        p = root / rel.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.unlink(missing_ok=True)  # e.g. a dangling resolv.conf symlink
        p.write_text(text)
        p.chmod(0o644)
    # The shared fix-up (SPEC §8): apt sources, hosts entry, keep-debs; not a container.
    user = spec.user
    env = bootstrap.fixup_env(
        distro=spec.distro, suite=spec.suite, user=user, container=False, mirror=spec.mirror
    )
    script = (target_bin() / "bootstrap-fixup").read_bytes()
    bootstrap.chroot_run(root, ["sh", "-s"], env=env, input=script, capture=True)
    chroot = ["chroot", os.fspath(root)]
    if run([*chroot, "id", "-u", user], check=False, capture=True).returncode != 0:
        run([*chroot, "useradd", "--create-home", "--shell", "/bin/bash", "--user-group", user])
    run([*chroot, "systemctl", "enable", "systemd-networkd.service"], capture=True)
    run([*chroot, "systemctl", "mask", *MASKED_UNITS], capture=True)
    run([*chroot, "systemctl", "set-default", "multi-user.target"], capture=True)
    # Host keys were generated by openssh-server's postinst; make sure.
    run([*chroot, "ssh-keygen", "-A"], capture=True)
    _authorize(root, user, pubkey)


def _authorize(root: Path, user: str, pubkey: bytes) -> None:
    """``pubkey`` in root's and the build user's ``authorized_keys``."""
    chroot = ["chroot", os.fspath(root)]
    uid_gid = run([*chroot, "sh", "-c", 'id -u "$1"; id -g "$1"', "sh", user], capture=True)
    uid, gid = (int(x) for x in uid_gid.stdout.split())
    for home_dir, owner in ((root / "root", (0, 0)), (root / "home" / user, (uid, gid))):
        ssh = home_dir / ".ssh"
        ssh.mkdir(mode=0o700, exist_ok=True)
        ak = ssh / "authorized_keys"
        ak.write_bytes(pubkey if pubkey.endswith(b"\n") else pubkey + b"\n")
        ak.chmod(0o600)
        for p in (ssh, ak):
            os.chown(p, *owner)


def _boot_files(root: Path) -> tuple[Path, Path]:
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    initrds = sorted((root / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise UsageError(f"no kernel/initrd in {root}/boot after bootstrap")
    return kernels[-1], initrds[-1]


def build_image(home: Home, spec: ImageSpec, *, tmpdir: Path | None = None) -> ImagePaths:
    """Build ``base-<suite>-<arch>.qcow2`` (+ ``.vmlinuz``, ``.initrd``) in ``home``.

    The previous base, if any, is replaced only when the new one is complete.
    """
    spec.check()
    reason = unavailable_reason()
    if reason:
        raise ToolMissingError(reason)
    key = ensure_ssh_key(home)
    pubkey = key.with_name(key.name + ".pub").read_bytes()
    paths = ImagePaths.of(home, spec.suite, spec.arch)
    work_parent = tmpdir or home.root
    work_parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".gitian-vmimage-", dir=work_parent) as tmp:
        work = Path(tmp)
        root = work / "root"
        t0 = time.monotonic()
        with log.step(f"Bootstrapping {spec.distro} {spec.suite} {spec.arch}"):
            run(mmdebstrap_argv(spec, root), capture=True)
        with log.step("Customising the VM root"):
            customise(root, spec, pubkey)
        kernel, initrd = _boot_files(root)
        staged_kernel = work / "vmlinuz"
        staged_initrd = work / "initrd"
        shutil.copyfile(kernel, staged_kernel)
        shutil.copyfile(initrd, staged_initrd)
        raw = work / "disk.raw"
        with log.step(f"Making the ext4 file system ({spec.disksize_mb} MB)"):
            with open(raw, "wb") as f:
                f.truncate(spec.disksize_mb * 1024 * 1024)
            run(
                [
                    "mkfs.ext4", "-q", "-F", "-L", "gitian-root",
                    "-E", "lazy_itable_init=0,lazy_journal_init=0",
                    "-d", root, raw,
                ],
                capture=True,
            )  # fmt: skip
        shutil.rmtree(root)  # free the space before the copy
        staged_disk = work / "disk.qcow2"
        with log.step("Converting to qcow2"):
            run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, staged_disk], capture=True)
        raw.unlink()
        # Install: the disk last, so a present disk means a complete base.
        paths.disk.unlink(missing_ok=True)
        os.replace(staged_kernel, paths.kernel)
        os.replace(staged_initrd, paths.initrd)
        os.replace(staged_disk, paths.disk)
        log.info(f"base image {paths.disk.name} ready in {time.monotonic() - t0:.0f}s")
    return paths
