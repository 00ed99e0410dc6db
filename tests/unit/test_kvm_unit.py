"""KVM backend pieces that need no VM: qemu command line, overlay, pid
handling, image spec checks, SSH key handling, readiness errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitian.errors import TargetError, UsageError
from gitian.home import Home
from gitian.ssh import SshTarget
from gitian.targets import backend_class
from gitian.targets.base import BaseOptions
from gitian.targets.kvm import KvmConfig, KvmTarget, qemu_binary
from gitian.vmimage import ImageSpec, ensure_ssh_key, mmdebstrap_argv
from tests.conftest import require_tool


def cfg(home: Home, **kw: object) -> KvmConfig:
    args: dict[str, object] = dict(home=home, suite="bookworm", arch="amd64", distro="debian")
    args.update(kw)
    return KvmConfig(**args)  # type: ignore[arg-type]


@pytest.fixture
def home(tmp_path: Path) -> Home:
    (tmp_path / "var").mkdir()
    return Home(tmp_path)


def fake_base(home: Home) -> None:
    require_tool("qemu-img")
    subprocess.run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            home.base("bookworm", "amd64", ".qcow2"),
            "64M",
        ],
        check=True,
    )
    home.base("bookworm", "amd64", ".vmlinuz").write_bytes(b"k")
    home.base("bookworm", "amd64", ".initrd").write_bytes(b"i")


def test_registry_finds_kvm() -> None:
    assert backend_class("kvm") is KvmTarget


def test_qemu_command_line(home: Home) -> None:
    t = KvmTarget(cfg(home, memory_mib=3000, nprocs=2, ssh_port=2299))
    argv = t.qemu_argv("tcg")
    joined = " ".join(argv)
    assert argv[0] == "qemu-system-x86_64"
    assert argv[argv.index("-m") + 1] == "3000"
    assert argv[argv.index("-smp") + 1] == "2"
    assert argv[argv.index("-cpu") + 1] == "max"
    assert argv[argv.index("-accel") + 1] == "tcg"
    assert "hostfwd=tcp:127.0.0.1:2299-:22" in joined
    drive = argv[argv.index("-drive") + 1]
    assert "if=virtio" in drive and "cache=unsafe" in drive
    assert f"file={home.target('bookworm', 'amd64', '.qcow2')}," in drive
    assert "virtio-net-pci,netdev=net0" in argv
    assert argv[argv.index("-kernel") + 1] == str(home.base("bookworm", "amd64", ".vmlinuz"))
    assert argv[argv.index("-initrd") + 1] == str(home.base("bookworm", "amd64", ".initrd"))
    assert "root=/dev/vda" in argv[argv.index("-append") + 1]
    assert argv[argv.index("-pidfile") + 1] == str(home.var / "target.pid")
    assert argv[argv.index("-serial") + 1] == f"file:{home.var / 'target.log'}"
    assert "-nodefaults" in argv and "-no-reboot" in argv and "-daemonize" in argv
    assert KvmTarget(cfg(home)).qemu_argv("kvm")[argv.index("-cpu") + 1] == "host"


def test_commas_in_paths_are_escaped_for_qemu(tmp_path: Path) -> None:
    h = Home(tmp_path / "a,b")
    drive = KvmTarget(cfg(h)).qemu_argv("tcg")
    assert any("a,,b" in a and a.startswith("file=") for a in drive)


def test_binary_by_bits_or_kvm_variable() -> None:
    assert qemu_binary("amd64") == "qemu-system-x86_64"
    assert qemu_binary("i386") == "qemu-system-i386"
    assert qemu_binary("amd64", "/opt/qemu/kvm") == "/opt/qemu/kvm"


def test_extra_kernel_arguments(home: Home) -> None:
    t = KvmTarget(cfg(home, kvm_append="systemd.unit=rescue.target"))
    argv = t.qemu_argv("tcg")
    assert argv[argv.index("-append") + 1].endswith(" systemd.unit=rescue.target")


def test_reset_without_base_names_make_base_vm(home: Home) -> None:
    with pytest.raises(TargetError, match="no KVM base image") as e:
        KvmTarget(cfg(home)).reset()
    assert (
        e.value.hint
        and "make-base-vm --distro debian --suite bookworm --arch amd64" in e.value.hint
    )


def test_reset_makes_an_overlay_and_leaves_the_base_alone(home: Home) -> None:
    fake_base(home)
    base = home.base("bookworm", "amd64", ".qcow2")
    before = base.read_bytes()
    t = KvmTarget(cfg(home))
    t.reset()
    t.reset()  # again: replaced, not stacked
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", home.target("bookworm", "amd64", ".qcow2")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f'"backing-filename": "{base}"' in info
    assert base.read_bytes() == before
    assert [p.name for p in home.root.iterdir() if p.name.startswith(".")] == []


def test_a_clean_target_from_a_layer_is_an_overlay_on_it(home: Home) -> None:
    fake_base(home)
    base = home.base("bookworm", "amd64", ".qcow2")
    t = KvmTarget(cfg(home))
    ident = t.base_identity()
    assert ident is not None and ident["kind"] == "qcow2"
    layer = home.var / "layers" / ("e" * 64)
    layer.mkdir(parents=True)
    with pytest.raises(TargetError, match="has no disk.qcow2"):
        t.from_layer(layer)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base,
                    layer / "disk.qcow2"], check=True)  # fmt: skip
    t.from_layer(layer)
    t.reset()
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", "--backing-chain",
         home.target("bookworm", "amd64", ".qcow2")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    chain = [i["filename"] for i in json.loads(info)]
    assert chain == [str(home.target("bookworm", "amd64", ".qcow2")), str(layer / "disk.qcow2"),
                     str(base)]  # fmt: skip
    t.drop_layer(layer)  # no VM runs: nothing stands on it
    # A base made anew is another identity, even with the same bytes.
    data = base.read_bytes()
    base.unlink()
    base.write_bytes(data)
    assert KvmTarget(cfg(home)).base_identity() != ident


def test_start_without_overlay_says_make_clean_vm(home: Home) -> None:
    fake_base(home)
    with pytest.raises(TargetError) as e:
        KvmTarget(cfg(home)).start()
    assert e.value.hint == "run make-clean-vm first"


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


def test_start_refuses_a_busy_port(home: Home, busy_port: int) -> None:
    fake_base(home)
    t = KvmTarget(cfg(home, ssh_port=busy_port, kvm_accel="tcg"))
    t.reset()
    with pytest.raises(TargetError, match=f"port 127.0.0.1:{busy_port} is already in use"):
        t.start()
    assert not (home.var / "target.pid").exists()


def test_stale_or_foreign_pid_files_are_ignored_and_stop_is_idempotent(home: Home) -> None:
    t = KvmTarget(cfg(home))
    pidfile = home.var / "target.pid"
    pidfile.write_text(f"{os.getpid()}\n")  # alive, but not our qemu: never killed
    assert t.running_pid() is None
    t.stop()
    assert not pidfile.exists()
    pidfile.write_text("garbage")
    assert t.running_pid() is None
    t.stop()
    t.stop()


def test_dead_vm_fails_at_once_naming_the_console_log(home: Home) -> None:
    (home.var / "target.log").write_text("Kernel panic - not syncing: VFS\n")
    (home.var / "target.pid").write_text("999999999\n")
    t = KvmTarget(cfg(home, kvm_accel="tcg"))
    (home.var / "id_rsa").write_text("x")
    t0 = time.monotonic()
    with pytest.raises(TargetError, match="stopped while booting") as e:
        t.wait_ready()
    assert time.monotonic() - t0 < 5
    assert str(home.var / "target.log") in str(e.value)
    assert e.value.hint and "Kernel panic" in e.value.hint


class Unanswered(SshTarget):
    """An SshTarget on a port that never speaks SSH (no VM involved)."""

    name = "test"
    connect_timeout = 0.5

    @classmethod
    def unavailable_reason(cls, *, for_base: bool = False, config: object = None) -> str | None:
        return None

    def make_base(self, options: BaseOptions) -> None: ...
    def has_base(self) -> bool:
        return True

    def reset(self) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...

    def console_log(self) -> Path:
        return self.config.home.var / "console.log"


@pytest.mark.parametrize("listening", [False, True])
def test_readiness_times_out_naming_the_console(home: Home, listening: bool) -> None:
    # Listening: TCP connects but no banner ever comes (a hung guest behind
    # qemu's forwarder).  Not listening: connection refused.
    (home.var / "id_rsa").write_text("x")
    (home.var / "console.log").write_text("booting...\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        if listening:
            s.listen(4)
        port = s.getsockname()[1]
        t = Unanswered(cfg(home, ssh_port=port))
        t0 = time.monotonic()
        with pytest.raises(TargetError, match="did not answer on SSH") as e:
            t.wait_ready(2.0)
        assert time.monotonic() - t0 < 6
    assert str(home.var / "console.log") in str(e.value)
    assert e.value.hint and "booting..." in e.value.hint


def test_image_spec_checks() -> None:
    ImageSpec("debian", "bookworm", "amd64", 4096).check()
    for bad in (
        ImageSpec("Debian;rm", "bookworm", "amd64", 4096),
        ImageSpec("debian", "book worm", "amd64", 4096),
        ImageSpec("debian", "bookworm", "arm64", 4096),
        ImageSpec("debian", "bookworm", "amd64", 100),
    ):
        with pytest.raises(UsageError):
            bad.check()


def test_bootstrap_command_has_the_package_set() -> None:
    argv = mmdebstrap_argv(ImageSpec("debian", "bookworm", "i386", 4096), Path("/r"))
    inc = next(a for a in argv if a.startswith("--include="))[len("--include=") :].split(",")
    wanted = "build-essential git subversion wget lsb-release sudo pciutils locales-all"
    wanted += " linux-image-686-pae openssh-server systemd-sysv"
    for p in wanted.split():
        assert p in inc
    assert "cron" not in inc
    assert "--architectures=i386" in argv
    assert argv[-2:] == ["bookworm", "/r"]  # no mirror: the tool's default
    with_mirror = mmdebstrap_argv(
        ImageSpec("debian", "bookworm", "amd64", 4096, mirror="http://m.invalid/debian"), Path("/r")
    )
    assert with_mirror[-1] == "http://m.invalid/debian"


def test_new_key_is_made_once_and_an_old_rsa_key_is_kept(home: Home) -> None:
    require_tool("ssh-keygen")
    key = ensure_ssh_key(home)
    assert key == home.var / "id_rsa"
    pub = (home.var / "id_rsa.pub").read_text()
    assert pub.startswith("ssh-ed25519 ")
    assert ensure_ssh_key(home) == key and (home.var / "id_rsa.pub").read_text() == pub
    # A classic home's RSA key keeps working; a missing .pub is derived.
    (home.var / "id_rsa").unlink()
    (home.var / "id_rsa.pub").unlink()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", home.var / "id_rsa"],
        check=True,
    )
    rsa = (home.var / "id_rsa").read_bytes()
    (home.var / "id_rsa.pub").unlink()
    ensure_ssh_key(home)
    assert (home.var / "id_rsa").read_bytes() == rsa
    assert (home.var / "id_rsa.pub").read_text().startswith("ssh-rsa ")


FAKE_QEMU = """#!/bin/sh
# A stand-in for qemu -daemonize: refuses KVM as a nested host does, and
# otherwise leaves a process whose command line names the pid file.
echo "$*" >> "$(dirname "$0")/calls"
case " $* " in *" -accel kvm "*)
    echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69" >&2; exit 1;;
esac
while [ $# -gt 0 ]; do [ "$1" = -pidfile ] && pidfile=$2; shift; done
python3 -c 'import time; time.sleep(60)' "$pidfile" </dev/null >/dev/null 2>&1 &
echo $! > "$pidfile"
"""


def test_a_vm_that_kvm_refuses_is_started_under_tcg(home: Home, tmp_path: Path) -> None:
    """The KVM probe can pass and the build's VM still fail to start under
    KVM (nested hosts refuse some CPU features): the build goes on with TCG,
    and later builds on this boot use TCG at once."""
    from gitian.targets.kvm import _boot_id

    fake_base(home)
    fake = tmp_path / "bin" / "qemu-system-x86_64"
    fake.parent.mkdir()
    fake.write_text(FAKE_QEMU)
    fake.chmod(0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = KvmTarget(cfg(home, kvm_binary=str(fake), ssh_port=port))
    t.reset()
    (home.var / "kvm-accel").write_text(f"{fake} {_boot_id()} kvm\n")
    try:
        t.start()
        assert t.running_pid() is not None
    finally:
        # Whatever the stand-in started, by the pid it wrote.
        pidfile = home.var / "target.pid"
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), 9)
            except ProcessLookupError:
                pass
    calls = (fake.parent / "calls").read_text().splitlines()
    assert [" -accel kvm " in f" {c} " for c in calls] == [True, False]
    assert " -cpu max " in f" {calls[1]} "
    assert (home.var / "kvm-accel").read_text().split()[-1] == "tcg"
    assert KvmTarget(cfg(home, kvm_binary=str(fake))).accel() == "tcg"
