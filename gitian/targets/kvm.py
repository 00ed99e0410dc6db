"""The KVM backend: a qemu VM booted straight into its kernel, reached over SSH.

Files in the gitian home (SPEC §1, §6)::

    base-<suite>-<arch>.qcow2       the base disk (ext4 on the whole disk)
    base-<suite>-<arch>.vmlinuz     its kernel   } direct kernel boot: no
    base-<suite>-<arch>.initrd      its initrd   } firmware disk probing, no GRUB
    target-<suite>-<arch>.qcow2     the clean overlay for one build
    var/target.pid                  qemu's pid while it runs
    var/target.log                  the guest's serial console
    var/id_rsa, var/id_rsa.pub      the key root and the build user accept

Acceleration: KVM when ``/dev/kvm`` opens *and* a guest really runs on it
(a firmware-only probe VM with ``-cpu host`` must reach its boot menu within
a few seconds; on nested hosts without VMX it crawls, hangs or aborts), else
TCG with ``-cpu max`` and a warning; a VM that still fails to start under KVM
is started again under TCG.  The answer is cached in ``var/`` for the host's
boot.
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from gitian import bootstrap, log, vmimage
from gitian.errors import CommandError, TargetError, ToolMissingError
from gitian.run import require, run, spawn, which, write_atomic
from gitian.ssh import SshConfig, SshTarget
from gitian.targets.base import BaseOptions, TargetConfig

#: the guest kernel's command line: serial console into var/target.log, the
#: file system on the whole virtio disk, eth0 naming, and a panic that ends
#: qemu at once (with -no-reboot) instead of a VM that never answers
KERNEL_CMDLINE = (
    "console=ttyS0,115200",
    "root=/dev/vda",
    "rootfstype=ext4",
    "rw",
    "net.ifnames=0",
    "panic=-1",
    "quiet",
    "loglevel=3",
    "systemd.show_status=false",
    "random.trust_cpu=on",
    # A throwaway single-purpose VM: no other tenant to protect, and under
    # TCG every page-table switch (KPTI) and retpoline costs emulated cycles.
    "mitigations=off",
)
#: seconds a firmware-only KVM guest may take to reach its boot menu
#: (real KVM: well under 1 s; TCG on this class of host: about 0.4 s)
KVM_PROBE_SECONDS = 3.0
#: how long a booting VM may take to answer on SSH
BOOT_TIMEOUT = {"kvm": 120.0, "tcg": 400.0}
#: stop-target: seconds between "poweroff" and a kill
POWEROFF_GRACE = 10.0


def qemu_binary(arch: str, explicit: str | None = None) -> str:
    """``KVM`` if set, else the qemu system emulator for the guest's bits."""
    if explicit:
        return explicit
    return "qemu-system-i386" if arch == "i386" else "qemu-system-x86_64"


def _opt_path(p: Path) -> str:
    # qemu option values separate with commas; a comma in a path is doubled.
    return os.fspath(p).replace(",", ",,")


def _pid_state(pid: int) -> str | None:
    """The process state letter of ``pid`` (R, S, Z…), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[0]


def _alive(pid: int) -> bool:
    state = _pid_state(pid)
    return state is not None and state not in ("Z", "X")


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def probe_kvm(binary: str, *, budget: float = KVM_PROBE_SECONDS) -> str | None:
    """None if a guest really runs under KVM here, else why not (one line).

    Boots only the firmware (SeaBIOS, no disk) with KVM and watches its debug
    console for the boot menu.  Opening ``/dev/kvm`` is not enough: on nested
    hosts without VMX the device exists but guests crawl or hang.
    """
    kvm = Path("/dev/kvm")
    if not kvm.exists():
        return "/dev/kvm does not exist"
    if not os.access(kvm, os.R_OK | os.W_OK):
        return "/dev/kvm is not readable and writable by this user"
    with tempfile.TemporaryDirectory(prefix="gitian-kvm-probe-") as tmp:
        dbg = Path(tmp) / "firmware.log"
        argv = [
            # The CPU model builds use: on some nested hosts "-cpu host" is
            # what fails (qemu aborts setting an MSR the host refuses).
            binary, "-accel", "kvm", "-cpu", "host", "-machine", "pc", "-m", "32",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-debugcon", f"file:{_opt_path(dbg)}", "-global", "isa-debugcon.iobase=0x402",
        ]  # fmt: skip
        with (
            tempfile.TemporaryFile() as err,
            spawn(argv, stdout=subprocess.DEVNULL, stderr=err, grace=0.0) as proc,
        ):
            start = time.monotonic()
            while time.monotonic() - start < budget:
                if proc.poll() is not None:
                    err.seek(0)
                    lines = err.read().decode(errors="replace").strip().splitlines()
                    return f"qemu cannot use KVM: {(lines or [f'exit {proc.returncode}'])[-1]}"
                try:
                    if b"Booting from" in dbg.read_bytes():
                        return None
                except FileNotFoundError:
                    pass
                time.sleep(0.05)
            return (
                f"a KVM guest did not reach its firmware boot menu within {budget:.0f}s "
                "(nested virtualisation without VMX/SVM?)"
            )


@dataclass(frozen=True)
class KvmConfig(SshConfig):
    """The KVM backend's own settings."""

    kvm_binary: str | None = None  # KVM: the qemu binary
    kvm_accel: str | None = None  # "kvm" or "tcg" instead of probing (tests, benchmarks)
    kvm_append: str = ""  # more kernel command line
    kvm_boot_timeout: float | None = None  # seconds to wait for SSH instead of BOOT_TIMEOUT


class KvmTarget(SshTarget):
    """qemu (KVM or TCG) with direct kernel boot, a qcow2 overlay per build, SSH."""

    name: ClassVar[str] = "kvm"
    config_type: ClassVar[type[TargetConfig]] = KvmConfig
    config: KvmConfig

    def __init__(self, config: TargetConfig) -> None:
        super().__init__(config)
        self._accel: str | None = self.config.kvm_accel
        self._layer: Path | None = None

    # -- paths -----------------------------------------------------------------
    @property
    def images(self) -> vmimage.ImagePaths:
        return vmimage.ImagePaths.of(self.config.home, self.config.suite, self.config.image_arch)

    @property
    def overlay(self) -> Path:
        return self.config.home.target(self.config.suite, self.config.image_arch, ".qcow2")

    @property
    def pidfile(self) -> Path:
        return self.config.home.var / "target.pid"

    def console_log(self) -> Path:
        return self.config.home.var / "target.log"

    @property
    def binary(self) -> str:
        return qemu_binary(self.config.image_arch, self.config.kvm_binary)

    # -- host checks -------------------------------------------------------------
    @classmethod
    def unavailable_reason(
        cls, *, for_base: bool = False, config: TargetConfig | None = None
    ) -> str | None:
        if for_base:
            return vmimage.unavailable_reason()
        try:
            require("qemu-system-x86_64", "qemu-img", why="for the KVM backend")
        except ToolMissingError as e:
            return f"{e.message}; {e.hint}"
        return None

    # -- make-base-vm ------------------------------------------------------------
    def make_base(self, options: BaseOptions) -> None:
        spec = vmimage.ImageSpec(
            distro=options.distro,
            suite=options.suite,
            arch="amd64" if options.arch == "linux64" else options.arch,
            disksize_mb=options.disksize_mb,
            mirror=bootstrap.choose_mirror(
                options.distro, explicit=options.mirror, mirror_host=self.config.mirror_host
            ),
            extra_packages=options.extra_packages,
        )
        vmimage.build_image(self.config.home, spec)

    def has_base(self) -> bool:
        return not self.images.missing()

    # -- make-clean-vm -----------------------------------------------------------
    def _require_base(self) -> None:
        missing = self.images.missing()
        if missing:
            raise TargetError(
                f"no KVM base image: {', '.join(os.fspath(p) for p in missing)} missing",
                hint=f"run: make-base-vm --distro {self.config.distro} "
                f"--suite {self.config.suite} --arch {self.config.image_arch}",
            )

    def reset(self) -> None:
        """A fresh qcow2 overlay on the base (or on an installed-packages
        layer, itself an overlay on the base); neither is ever written."""
        self._require_base()
        require("qemu-img", why="to make the clean target")
        if self.running_pid() is not None:
            raise TargetError("the target is running; stop it first (stop-target)")
        backing = self.images.disk.resolve() if self._layer is None else self._layer_disk
        tmp = self.overlay.with_name(f".{self.overlay.name}.tmp.{os.getpid()}")
        try:
            run(
                [
                    "qemu-img", "create", "-q", "-f", "qcow2",
                    "-F", "qcow2", "-b", os.fspath(backing), tmp,
                ],
                capture=True,
            )  # fmt: skip
            os.replace(tmp, self.overlay)
        finally:
            tmp.unlink(missing_ok=True)

    # -- installed-packages layers: the package step's qcow2 overlay ----------------
    def base_identity(self) -> dict[str, str] | None:
        if self.images.missing():
            return None
        ident = {"kind": "qcow2"}
        for what, p in (("disk", self.images.disk), ("kernel", self.images.kernel),
                        ("initrd", self.images.initrd)):  # fmt: skip
            st = p.resolve().stat()
            # A base made anew is a new file: another inode and time.
            ident[what] = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
        return ident

    def from_layer(self, layer: Path | None) -> None:
        if layer is not None and not (layer / "disk.qcow2").is_file():
            raise TargetError(f"the layer {layer.name} has no disk.qcow2")
        self._layer = layer

    @property
    def _layer_disk(self) -> Path:
        assert self._layer is not None
        return self._layer / "disk.qcow2"

    def keep_layer(self, dest: Path, name: str) -> int:
        """Flush the guest's file system, power it off; the overlay it ran
        on becomes the layer (its backing file is the base)."""
        if self._layer is not None:
            raise TargetError("a layer is only kept of a target made from the base")
        # With cache=unsafe qemu still writes what a guest's sync flushes to
        # the host's files; a poweroff cut short by the kill loses nothing.
        self.run(["sync"], user="root")
        self.stop()
        shutil.move(self.overlay, dest / "disk.qcow2")
        return 0

    def drop_layer(self, layer: Path) -> None:
        if self.running_pid() is None:
            return
        disk = os.fsencode(os.fspath(layer / "disk.qcow2"))
        for overlay in self.config.home.root.glob("target-*.qcow2"):  # whichever the VM runs
            res = run(["qemu-img", "info", "-U", "--output=json", "--backing-chain", overlay],
                      check=False, capture=True)  # fmt: skip
            if disk in (res.stdout or b""):
                raise TargetError("the running VM stands on it", hint="stop it first (stop-target)")

    # -- start-target --------------------------------------------------------------
    def accel(self) -> str:
        """``kvm`` or ``tcg``: KVM only when a guest really runs on it (cached per boot)."""
        if self._accel:
            return self._accel
        cache = self.config.home.var / "kvm-accel"
        key = f"{self.binary} {_boot_id()}"
        try:
            cached_key, _, cached = cache.read_text().strip().rpartition(" ")
            if cached_key == key and cached in ("kvm", "tcg"):
                self._accel = cached
        except OSError:
            pass
        if self._accel is None:
            why = probe_kvm(self.binary)
            accel = "tcg" if why else "kvm"
            self._remember(accel)
            if why:
                log.warn(f"KVM is not usable ({why}); falling back to TCG emulation (slow)")
            return accel
        if self._accel == "tcg":
            log.warn("KVM is not usable on this host (probed earlier); using TCG emulation (slow)")
        return self._accel

    def _remember(self, accel: str) -> None:
        """Use ``accel`` from now on, for this host's boot (``var/kvm-accel``)."""
        self._accel = accel
        cache = self.config.home.var / "kvm-accel"
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cache, f"{self.binary} {_boot_id()} {accel}\n".encode())

    def qemu_argv(self, accel: str) -> list[str]:
        """The qemu command line, option by option."""
        c = self.config
        append = " ".join(KERNEL_CMDLINE)
        if c.kvm_append:
            append += " " + c.kvm_append
        cpu = "host" if accel == "kvm" else "max"
        return [
            self.binary,
            "-name", "gitian-target",
            "-machine", "pc",
            "-accel", accel,
            "-cpu", cpu,
            "-m", str(c.memory_mib),
            "-smp", str(c.nprocs),
            "-nodefaults", "-no-user-config",
            "-display", "none",
            "-no-reboot",  # poweroff/reboot/panic end qemu
            "-kernel", os.fspath(self.images.kernel),
            "-initrd", os.fspath(self.images.initrd),
            "-append", append,
            # The overlay is thrown away after the build: never wait for fsync.
            "-drive", f"file={_opt_path(self.overlay)},if=virtio,format=qcow2,cache=unsafe",
            "-netdev", f"user,id=net0,hostfwd=tcp:{self.ssh_host}:{self.ssh_port()}-:22",
            "-device", "virtio-net-pci,netdev=net0",
            "-device", "virtio-rng-pci",
            "-serial", f"file:{_opt_path(self.console_log())}",
            "-pidfile", os.fspath(self.pidfile),
            "-daemonize",
        ]  # fmt: skip

    def _check_port_free(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((self.ssh_host, self.ssh_port()))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise TargetError(
                        f"port {self.ssh_host}:{self.ssh_port()} is already in use",
                        hint="stop whatever listens there, or choose another VM_SSH_PORT",
                    ) from None
                raise

    def start(self) -> None:
        """Boot the overlay in the background (qemu -daemonize); pid in var/target.pid."""
        if not self.overlay.is_file():
            raise TargetError(f"no clean target {self.overlay}", hint="run make-clean-vm first")
        self._require_base()
        if which(self.binary) is None:
            require(self.binary, why="to start the VM")
        pid = self.running_pid()
        if pid is not None:
            raise TargetError(f"a target is already running (qemu pid {pid}); stop-target first")
        self._check_port_free()
        accel = self.accel()
        self.config.home.var.mkdir(parents=True, exist_ok=True)
        try:
            self._launch(accel)
        except TargetError as e:
            if accel != "kvm" or self.config.kvm_accel:
                raise
            # The probe passed, but this VM did not start under KVM (nested
            # hosts refuse some CPU features): the build goes on under TCG.
            reason = e.message.splitlines()[0]
            log.warn(f"qemu could not start with KVM ({reason}); falling back to TCG (slow)")
            self._remember("tcg")
            self._launch("tcg")
        if self.running_pid() is None:
            raise self.unreachable("qemu exited right after starting")

    def _launch(self, accel: str) -> None:
        """Run qemu -daemonize with ``accel``; TargetError if it does not start."""
        self.pidfile.unlink(missing_ok=True)
        argv = self.qemu_argv(accel)
        with log.step(f"Starting the VM ({accel})"):
            try:
                run(argv, capture=True, timeout=60)
            except CommandError as e:
                self._kill_from_pidfile()
                raise TargetError(
                    f"qemu failed to start: {e.output.strip() or e.message}",
                    hint="rerun: " + shlex.join(argv),
                ) from None
            except BaseException:
                self._kill_from_pidfile()
                raise

    def boot_timeout(self) -> float:
        if self.config.kvm_boot_timeout:
            return self.config.kvm_boot_timeout
        return BOOT_TIMEOUT[self._accel or "tcg"]

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait for SSH; never less than the accelerator's boot time (TCG is slow).

        On failure the VM is killed, so nothing is left behind, and the
        error names var/target.log and shows its last lines.
        """
        t = max(timeout or 0.0, self.boot_timeout())
        t0 = time.monotonic()
        try:
            super().wait_ready(t)
        except BaseException:
            self._kill_from_pidfile()
            self.close()
            raise
        log.debug(f"target answered after {time.monotonic() - t0:.1f}s")

    def check_alive(self) -> str | None:
        if self.running_pid() is not None:
            return None
        return "qemu is not running" + (
            " (it exited or was killed)" if self.pidfile.exists() else ""
        )

    # -- stop-target ---------------------------------------------------------------
    def running_pid(self) -> int | None:
        """qemu's pid from var/target.pid if that process is alive and is ours."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        if not _alive(pid):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        # A recycled pid belongs to someone else: only our qemu counts.
        if os.fsencode(os.fspath(self.pidfile)) not in cmdline:
            return None
        return pid

    def stop(self) -> None:
        """``poweroff`` over SSH, kill qemu after 10 s, remove the pid file.  Idempotent."""
        pid = self.running_pid()
        if pid is not None:
            try:
                self.connect(timeout=3.0)
                self.exec_command(
                    "systemctl poweroff --no-block || poweroff",
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            except Exception as e:  # a dying VM may fail in any way; we kill it next
                log.debug(f"poweroff over SSH failed: {e}")
            finally:
                self.close()
            deadline = time.monotonic() + POWEROFF_GRACE
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.2)
        self._kill_from_pidfile()
        self.close()

    def _kill_from_pidfile(self) -> None:
        pid = self.running_pid()
        if pid is not None:
            for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + wait
                while time.monotonic() < deadline and _alive(pid):
                    time.sleep(0.05)
                if not _alive(pid):
                    break
            if _alive(pid):
                raise TargetError(f"could not kill qemu (pid {pid})")
        self.pidfile.unlink(missing_ok=True)
