"""The KVM backend on a real VM (TCG here; KVM where it really works).

One Debian base is built per session (or reused from ``GITIAN_TEST_KVM_HOME``,
a gitian home that already holds ``base-bookworm-amd64.qcow2``).  Port 2223
unless ``VM_SSH_PORT`` says otherwise; one VM at a time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gitian.errors import CommandError, TargetError
from gitian.home import Home
from gitian.targets.base import BaseOptions
from gitian.targets.kvm import KvmConfig, KvmTarget
from tests.conftest import pid_gone, require_root, require_tool, wait_until
from tests.integration.conftest import layer_dirs, snapshot

pytestmark = [pytest.mark.integration, pytest.mark.backend("kvm")]

SUITE, ARCH, DISTRO = "bookworm", "amd64", "debian"
PORT = int(os.environ.get("VM_SSH_PORT", "2223"))
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "descriptors" / "example.yml"


def qemu_pids() -> set[int]:
    """Every gitian VM (qemu with ``-name gitian-target``) on this host; this
    backend's tests are the only ones that start qemu."""
    out = set()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes()
        except OSError:
            continue
        if cmd.startswith(b"qemu-system") and b"\0gitian-target\0" in cmd:
            out.add(int(p.name))
    return out


def config(home: Home, **extra: object) -> KvmConfig:
    return KvmConfig(
        home=home, suite=SUITE, arch=ARCH, distro=DISTRO, memory_mib=1024, nprocs=2,
        ssh_port=PORT, **extra,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.fixture(scope="session")
def kvm_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    require_root()
    require_tool("mmdebstrap", "mkfs.ext4", "qemu-img", "qemu-system-x86_64", "ssh-keygen")
    root = tmp_path_factory.mktemp("gitian-kvm-test")
    home = Home(root)
    reuse = os.environ.get("GITIAN_TEST_KVM_HOME")
    if reuse:
        src = Home(Path(reuse))
        (root / "var").mkdir()
        for suffix in (".qcow2", ".vmlinuz", ".initrd"):
            os.link(src.base(SUITE, ARCH, suffix), home.base(SUITE, ARCH, suffix))
        for key in ("id_rsa", "id_rsa.pub"):
            shutil.copy2(src.var / key, home.var / key)
    else:
        KvmTarget(config(home)).make_base(
            BaseOptions(distro=DISTRO, suite=SUITE, arch=ARCH, disksize_mb=4096)
        )
    yield home
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def vm(kvm_home: Home) -> Iterator[KvmTarget]:
    t = KvmTarget(config(kvm_home))
    with t.session():
        yield t
    assert not qemu_pids()


def test_base_has_its_parts(kvm_home: Home) -> None:
    for suffix in (".qcow2", ".vmlinuz", ".initrd"):
        assert kvm_home.base(SUITE, ARCH, suffix).stat().st_size > 1_000_000
    info = subprocess.run(
        ["qemu-img", "info", kvm_home.base(SUITE, ARCH, ".qcow2")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "file format: qcow2" in info.stdout
    assert "virtual size: 4 GiB" in info.stdout


def test_reset_is_an_overlay_and_leaves_the_base_alone(kvm_home: Home) -> None:
    base = kvm_home.base(SUITE, ARCH, ".qcow2")
    before = base.stat().st_mtime_ns
    KvmTarget(config(kvm_home)).reset()
    overlay = kvm_home.target(SUITE, ARCH, ".qcow2")
    info = subprocess.run(
        ["qemu-img", "info", overlay], capture_output=True, text=True, check=True
    ).stdout
    assert f"backing file: {base}" in info
    assert overlay.stat().st_size < 1_000_000
    assert base.stat().st_mtime_ns == before


def test_users_exit_status_stdin_env(vm: KvmTarget) -> None:
    assert vm.run(["id", "-u"], user="root", capture=True).stdout == b"0\n"
    assert vm.run(["id", "-un"], capture=True).stdout == b"debian\n"
    assert vm.run(["pwd"], capture=True).stdout == b"/home/debian\n"
    assert vm.run(["sh", "-c", "exit 3"], check=False).returncode == 3
    with pytest.raises(CommandError, match="exited 4"):
        vm.run(["sh", "-c", "echo oops >&2; exit 4"], capture=True)
    data = os.urandom(3 * 1024 * 1024)
    assert vm.run(["cat"], stdin=data, capture=True).stdout == data
    out = vm.run(["sh", "-c", 'printf %s "$A|$B"'], env={"A": "x y", "B": "'$"}, capture=True)
    assert out.stdout == b"x y|'$"
    # The one-time upgrade happened when the base was made (SPEC §3 improve).
    vm.run(["test", "-f", "/var/cache/gitian/initial-upgrade"])
    vm.run(["python3", "-c", "import zipfile"])  # what canon-zip needs
    # Guests reach the archive: DHCP and DNS work.
    vm.run(["getent", "hosts", "localhost"])
    assert b"10.0.2." in vm.run(["ip", "-4", "addr"], capture=True).stdout


def test_copies_keep_owners_right(vm: KvmTarget, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "a file").write_bytes(b"hello\n")
    (src / "sub" / "b").write_bytes(os.urandom(200_000))
    os.chmod(src / "a file", 0o755)
    vm.copy_to(src, "build")
    owners = (
        vm.run(
            ["sh", "-c", 'stat -c "%U %a %n" build/tree "build/tree/a file" build/tree/sub/b'],
            capture=True,
        )
        .stdout.decode()
        .splitlines()
    )
    assert [o.split()[0] for o in owners] == ["debian"] * 3
    assert owners[1].split()[1] == "755"
    vm.copy_to(src / "a file", "/root/in", user="root")
    assert vm.run(["stat", "-c", "%U", "/root/in/a file"], user="root", capture=True).stdout == (
        b"root\n"
    )
    back = tmp_path / "back"
    vm.copy_from("build/tree", back)
    assert (back / "tree" / "a file").read_bytes() == b"hello\n"
    assert (back / "tree" / "sub" / "b").read_bytes() == (src / "sub" / "b").read_bytes()
    assert (back / "tree" / "sub" / "b").stat().st_uid == os.getuid()
    with pytest.raises(TargetError, match="copy-from-target failed"):
        vm.copy_from("build/missing", back)


def test_stop_leaves_no_qemu(kvm_home: Home, vm: KvmTarget) -> None:
    # A second handle on the same home, as stop-target in its own process would be.
    t = KvmTarget(config(kvm_home))
    pid = t.running_pid()
    assert pid is not None
    t.stop()
    assert t.running_pid() is None
    assert pid_gone(pid)
    assert not (kvm_home.var / "target.pid").exists()
    assert not qemu_pids()
    t.stop()  # idempotent


def test_killed_qemu_gives_a_clear_error(kvm_home: Home) -> None:
    t = KvmTarget(config(kvm_home))
    with pytest.raises(TargetError) as err:
        with t.session():
            pid = t.running_pid()
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: pid_gone(pid), timeout=10, what="qemu to die")
            t.run(["sleep", "5"])
    assert "var/target.log" in str(err.value)
    assert not qemu_pids()


def test_vm_that_never_answers_times_out_naming_the_console(kvm_home: Home) -> None:
    # The kernel and systemd come up, sshd never does.
    t = KvmTarget(config(kvm_home, kvm_append="systemd.mask=ssh.service", kvm_boot_timeout=25.0))
    t0 = time.monotonic()
    with pytest.raises(TargetError) as err:
        with t.session():
            pass
    assert time.monotonic() - t0 < 90
    assert "did not answer on SSH" in str(err.value)
    assert str(kvm_home.var / "target.log") in str(err.value)
    assert not qemu_pids()
    assert t.running_pid() is None


def test_a_dead_kernel_fails_fast(kvm_home: Home) -> None:
    # No initrd init: the kernel cannot mount the root (virtio_blk is a module)
    # and panics; qemu exits (-no-reboot, panic=-1) instead of never answering.
    t = KvmTarget(config(kvm_home, kvm_append="rdinit=/nonexistent", kvm_boot_timeout=200.0))
    t0 = time.monotonic()
    with pytest.raises(TargetError, match="stopped while booting") as err:
        with t.session():
            pass
    assert time.monotonic() - t0 < 120
    assert "target.log" in str(err.value)
    assert not qemu_pids()


def test_libexec_tools_drive_the_vm(kvm_home: Home, tmp_path: Path) -> None:
    """The classic command sequence, one process per command, as gbuild did."""
    libexec = ROOT / "libexec"
    env = dict(os.environ, VM_SSH_PORT=str(PORT), DISTRO=DISTRO, VMEM="1024", NPROCS="2")
    for k in ("USE_LXC", "USE_DOCKER", "USE_VBOX", "USE_BWRAP"):
        env.pop(k, None)

    def tool(name: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, os.fspath(libexec / name), "--workdir", os.fspath(kvm_home.root)]
        return subprocess.run(
            [*argv, *args], input=stdin, capture_output=True, text=True, env=env, timeout=900
        )

    pid = 0
    try:
        r = tool("make-clean-vm", "--suite", SUITE, "--arch", ARCH)
        assert r.returncode == 0, r.stderr
        r = tool("start-target", "64", f"{SUITE}-{ARCH}")
        assert r.returncode == 0, r.stderr
        pid = int((kvm_home.var / "target.pid").read_text())
        # the classic wait: poll on-target until a command runs
        wait_until(
            lambda: tool("on-target", "true").returncode == 0,
            timeout=300,
            what="on-target to reach the VM",
            interval=5,
        )
        r = tool("on-target", "-u", "root", "id", "-un")
        assert (r.returncode, r.stdout) == (0, "root\n"), r.stderr
        r = tool("on-target", "-e", "A=1 B=two", "sh", "-c", 'echo "$A $B $(id -un)"; exit 9')
        assert (r.returncode, r.stdout) == (9, "1 two debian\n"), r.stderr
        r = tool("on-target", "sh", "-c", "tr a-z A-Z", stdin="piped in\n")
        assert r.stdout == "PIPED IN\n", r.stderr
        f = tmp_path / "hello.txt"
        f.write_text("hi\n")
        assert tool("copy-to-target", os.fspath(f), "build/").returncode == 0
        r = tool("on-target", "stat", "-c", "%U", "build/hello.txt")
        assert r.stdout == "debian\n", r.stderr
        out = tmp_path / "out"
        r = tool("copy-from-target", "build/hello.txt", os.fspath(out))
        assert r.returncode == 0, r.stderr
        assert (out / "hello.txt").read_text() == "hi\n"
    finally:
        r = tool("stop-target")
    assert r.returncode == 0, r.stderr
    assert pid and pid_gone(pid)
    assert not qemu_pids()


# -- gbuild end to end on a VM, compared with a bubblewrap build ----------------


def _gbuild(home: Home, backend: str, timeout: float) -> subprocess.CompletedProcess[str]:
    subprocess.run(
        [os.fspath(ROOT / "descriptors" / "prepare-example"), os.fspath(home.root)],
        check=True, capture_output=True,
    )  # fmt: skip
    argv = [
        sys.executable, os.fspath(ROOT / "bin" / "gbuild"), "--backend", backend,
        "--workdir", os.fspath(home.root), os.fspath(EXAMPLE),
    ]  # fmt: skip
    env = dict(os.environ, VM_SSH_PORT=str(PORT))
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)


def test_example_builds_on_kvm_like_on_bwrap(
    kvm_home: Home, base_home: Callable[[str], Home], tmp_path: Path
) -> None:
    from gitian.manifest import read_report

    ref = base_home("bwrap")
    r = _gbuild(ref, "bwrap", 900)
    assert r.returncode == 0, r.stdout + r.stderr
    home = Home(tmp_path / "kvm-build")
    (home.var).mkdir(parents=True)
    for suffix in (".qcow2", ".vmlinuz", ".initrd"):
        os.link(kvm_home.base(SUITE, ARCH, suffix), home.base(SUITE, ARCH, suffix))
    for key in ("id_rsa", "id_rsa.pub"):
        shutil.copy2(kvm_home.var / key, home.var / key)
    t0 = time.monotonic()
    r = _gbuild(home, "kvm", 2400)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stdout + r.stderr[-4000:]
    print(f"gbuild of the example on kvm took {took:.0f}s")
    mine = read_report(home.result_file("gitian-example"))
    theirs = read_report(ref.result_file("gitian-example"))
    assert mine.out_manifest == theirs.out_manifest
    assert "  gitian-example.zip\n" in mine.out_manifest  # canon-zip ran in the VM
    assert mine.in_manifest == theirs.in_manifest
    assert not qemu_pids() and not (home.var / "target.pid").exists()

    # The package step was kept as a qcow2 overlay on the base; a rebuild
    # boots an overlay on it, runs no apt step and gives the same bytes.
    [layer] = layer_dirs(home)
    disk = home.var / "layers" / layer / "disk.qcow2"
    assert _backing_chain(disk) == [disk, home.base(SUITE, ARCH, ".qcow2")]
    first = snapshot(home)
    t0 = time.monotonic()
    r = _gbuild(home, "kvm", 2400)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stdout + r.stderr[-4000:]
    print(f"rebuild of the example on kvm from its layer took {took:.0f}s")
    assert f"Using the installed-packages layer {layer[:12]}" in r.stderr
    assert "Updating apt-get" not in r.stderr
    assert snapshot(home) == first
    target = home.target(SUITE, ARCH, ".qcow2")
    assert _backing_chain(target) == [target, disk, home.base(SUITE, ARCH, ".qcow2")]
    assert not qemu_pids() and not (home.var / "target.pid").exists()


def _backing_chain(image: Path) -> list[Path]:
    info = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", "--backing-chain", image],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [Path(i["filename"]) for i in json.loads(info)]
