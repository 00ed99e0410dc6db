"""Session fixtures for integration tests on real container targets.

``base_home`` is the one to use for anything that needs a built target:

    def test_something(base_home):
        home = base_home("bwrap")          # or "lxc"
        config = TargetConfig(home=home, suite="bookworm", arch="amd64", distro="debian")
        with make_target("bwrap", config).session() as t:
            t.run(["true"])

A Debian bookworm amd64 directory base is made ONCE per test session (about
two minutes, by ``make-base-vm --lxc``, or ``--bwrap`` where LXC cannot run;
bwrap and LXC share the same base), and each ``base_home(...)``
call returns a FRESH gitian home whose ``base-bookworm-amd64`` and
``var/cache/debs`` are symlinks to that one base and its .deb cache.  Every
target started from those homes is stopped at the end of the session.

Set ``GITIAN_TEST_BASE_HOME`` to a gitian home that already holds
``base-bookworm-amd64/`` (made by ``make-base-vm --bwrap --distro debian
--suite bookworm``) to skip the bootstrap while developing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gitian.errors import CommandError, TargetError
from gitian.home import Home, target_bin
from gitian.targets import backend_class, make_target
from gitian.targets.base import Target, TargetConfig
from gitian.targets.lxc import LxcNetUsers, bridge_exists, lxc_net_settings
from gitian.targets.rootfs import missing_for_base_host
from tests.conftest import pid_gone, require_root, require_tool, strict_skips, wait_until

SUITE, ARCH, DISTRO = "bookworm", "amd64", "debian"
BaseHome = Callable[[str], Home]


def _require_backend(backend: str) -> None:
    require_root()
    reason = backend_class(backend).unavailable_reason(for_base=True)
    if reason:
        if strict_skips():
            pytest.fail(f"{backend}: {reason} (skips are failures in CI)")
        pytest.skip(f"{backend}: {reason}")


@pytest.fixture(scope="session")
def shared_base(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """The gitian home holding this session's bookworm amd64 base (made once)."""
    require_root()
    reason = missing_for_base_host()
    if reason:
        if strict_skips():
            pytest.fail(f"cannot make a base: {reason} (skips are failures in CI)")
        pytest.skip(f"cannot make a base: {reason}")
    given = os.environ.get("GITIAN_TEST_BASE_HOME")
    if given:
        home = Home(Path(given).resolve())
        if not (home.base(SUITE, ARCH) / "etc").is_dir():
            pytest.fail(f"GITIAN_TEST_BASE_HOME={given} has no base-{SUITE}-{ARCH}/")
        return home
    home = Home(tmp_path_factory.mktemp("gitian-base"))
    # Made as a user makes it, with make-base-vm --lxc where LXC can run (the
    # bwrap tests then use an LXC-made base: they share it), else --bwrap.
    backend = "lxc" if backend_class("lxc").unavailable_reason(for_base=True) is None else "bwrap"
    r = make_base_vm(home, backend)
    if r.returncode != 0:
        pytest.fail(f"make-base-vm --{backend} failed: {r.stderr[-4000:]}")
    return home


def make_base_vm(home: Home, backend: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``make-base-vm --BACKEND`` for this session's suite, arch and distro in ``home``."""
    argv = [sys.executable, "-c", "from gitian.cli.targettools import make_base_vm; make_base_vm()",
            f"--{backend}", "--distro", DISTRO, "--suite", SUITE, "--arch", ARCH,
            "--workdir", os.fspath(home.root), *args]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("USE_")}
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False)


@pytest.fixture(scope="session")
def base_home(shared_base: Home, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaseHome]:
    """``base_home(backend)`` → a fresh gitian home with a ready bookworm amd64
    base for ``backend`` ("bwrap" or "lxc"); skips (fails in CI) when the host
    cannot run that backend.  Targets are stopped at session end."""
    made: list[tuple[str, Home]] = []

    def factory(backend: str) -> Home:
        _require_backend(backend)
        home = Home(tmp_path_factory.mktemp(f"gitian-{backend}"))
        home.var.joinpath("cache").mkdir(parents=True)
        home.base(SUITE, ARCH).symlink_to(shared_base.base(SUITE, ARCH))
        shared_base.package_cache.mkdir(parents=True, exist_ok=True)
        home.package_cache.symlink_to(shared_base.package_cache)
        made.append((backend, home))
        return home

    yield factory
    for backend, home in made:
        cfg = TargetConfig(home=home, suite=SUITE, arch=ARCH, distro=DISTRO)
        make_target(backend, cfg).stop()


@pytest.fixture(scope="session")
def lxc_net() -> Iterator[str]:
    """LXC's NAT bridge (lxcbr0) for the session: brought up only if missing,
    stopped at the end only if this fixture brought it up."""
    require_root()
    require_tool("lxc-execute", "dnsmasq", "iptables")
    bridge = lxc_net_settings()["LXC_BRIDGE"]
    users = LxcNetUsers(bridge)
    me = f"pytest-{os.getpid()}"
    users.acquire(me)
    try:
        yield bridge
    finally:
        users.release(me)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (to check that nothing is left mounted)."""
    want = os.fspath(path)
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4]
        if mp == want or mp.startswith(want + "/"):
            out.append(mp)
    return out


def run_ok(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload,no-any-return]


# -- checks every container target must pass (used by test_bwrap and test_lxc) --


def check_users_env_stdin_status(t: Target) -> None:
    r = t.run(
        ["sh", "-c", 'id -un; echo "$HOME"; pwd; echo "$FOO"'], env={"FOO": "a b"}, capture=True
    )
    assert r.stdout.decode().split("\n")[:4] == ["debian", "/home/debian", "/home/debian", "a b"]
    r = t.run(["id", "-u"], user="root", capture=True)
    assert r.stdout == b"0\n"
    r = t.run(["cat"], stdin=b"through stdin\n", capture=True)
    assert r.stdout == b"through stdin\n"
    r = t.run(["sh", "-c", "exit 42"], check=False)
    assert r.returncode == 42
    with pytest.raises(CommandError) as e:
        t.run(["sh", "-c", "echo boom >&2; exit 3"], capture=True)
    assert e.value.returncode == 3
    # Only what was asked for reaches the target's environment.
    r = t.run(["env"], capture=True)
    names = {line.split("=", 1)[0] for line in r.stdout.decode().splitlines()}
    assert names <= {"HOME", "USER", "LOGNAME", "PATH", "LANG", "PWD", "SHLVL", "_"}, names


def check_copies(t: Target, tmp: Path) -> None:
    src = tmp / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_bytes(b"data\n")
    (src / "top").write_bytes(b"top\n")
    os.chown(src / "sub" / "f", 1234, 1234)
    t.copy_to(src, "build/")
    r = t.run(
        ["stat", "-c", "%U:%G %n", "build/tree", "build/tree/sub/f", "build/tree/top"], capture=True
    )
    assert [ln.split()[0] for ln in r.stdout.decode().splitlines()] == ["debian:debian"] * 3
    single = tmp / "single.txt"
    single.write_bytes(b"one\n")
    t.copy_to(single, "build")
    assert t.run(["cat", "build/single.txt"], capture=True).stdout == b"one\n"
    t.copy_to(single, "/root/in", user="root")
    r = t.run(["stat", "-c", "%U", "/root/in/single.txt"], user="root", capture=True)
    assert r.stdout == b"root\n"
    out = tmp / "out"
    t.copy_from("build/tree", out)
    assert (out / "tree" / "sub" / "f").read_bytes() == b"data\n"
    for p in (out / "tree", out / "tree" / "sub" / "f", out / "tree" / "top"):
        st = p.stat()
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid()), p
    with pytest.raises(TargetError):
        t.copy_from("build/no-such-thing", out)


def check_base_contents(t: Target) -> None:
    t.run(["test", "-e", "/var/cache/gitian/initial-upgrade"])
    r = t.run(["/usr/sbin/policy-rc.d"], user="root", check=False)
    assert r.returncode == 101
    r = t.run(["getent", "passwd", "debian"], capture=True)
    assert r.stdout.decode().split(":")[5] == "/home/debian"
    r = t.run(["cat", "/etc/apt/apt.conf.d/10gitian-keep-debs"], capture=True)
    assert b"Keep-Downloaded-Packages" in r.stdout
    t.run(["python3", "-c", "import zipfile"])  # what canon-zip needs


def check_network(t: Target, home: Home) -> None:
    # Without network=True there is nothing but loopback.
    r = t.run(["sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1"], capture=True)
    assert r.stdout.split() == [b"lo"]
    r = t.run(["apt-get", "-q", "update"], user="root", network=True, capture=True)
    r = t.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "hello"],
        user="root",
        network=True,
        capture=True,
        env={"DEBIAN_FRONTEND": "noninteractive"},
    )
    assert t.run(["hello"], capture=True).stdout == b"Hello, world!\n"
    assert list(home.package_cache.glob("hello_*.deb")), "the .deb did not reach the host cache"


def check_grab_packages(t: Target, home: Home) -> None:
    # A .deb of another version in the shared cache must not show up.
    cache = home.package_cache
    bogus = cache / "base-files_0.0-bogus_amd64.deb"
    bogus.write_bytes(b"not a deb")
    try:
        script = (target_bin() / "grab-packages.sh").read_bytes()
        out = t.run(["bash", "-s"], user="root", stdin=script, network=True, capture=True)
    finally:
        bogus.unlink()
    lines = out.stdout.decode().splitlines()
    assert lines, out.stderr
    names = [ln.split("  ", 1)[1] for ln in lines]
    assert names == sorted(names)
    assert all(len(ln.split("  ", 1)[0]) == 64 for ln in lines)
    assert "base-files_0.0-bogus_amd64.deb" not in names
    installed = (
        t.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}${Package}\n"], capture=True)
        .stdout.decode()
        .split()
    )
    assert len(names) == sum(1 for x in installed if x.startswith("ii"))


def check_reset(t: Target) -> None:
    t.run(["touch", "left-over"])
    t.stop()
    with t.session(reset=False):
        t.run(["test", "-e", "left-over"])
    with t.session():
        assert t.run(["test", "-e", "left-over"], check=False).returncode == 1


# -- installed-packages layers (gitian.layers): checks shared by the backends' tests --


EXAMPLE = Path(__file__).resolve().parents[2] / "descriptors" / "example.yml"


def example_with(package: str, dest: Path) -> Path:
    """The example descriptor with one more package (another layer key), at ``dest``."""
    dest.write_text(EXAMPLE.read_text().replace('- "zip"\n', f'- "zip"\n- "{package}"\n'))
    return dest


def snapshot(home: Home, name: str = "gitian-example") -> dict[str, bytes]:
    """The result file and every output file of the last build, as bytes."""
    files = {"result": home.result_file(name).read_bytes()}
    out = home.build / "out"
    files.update({f"out/{p.name}": p.read_bytes() for p in sorted(out.iterdir())})
    return files


def layer_dirs(home: Home) -> list[str]:
    """The complete layers in ``home`` (var/layers/<key>/)."""
    root = home.var / "layers"
    return sorted(p.name for p in root.iterdir() if p.is_dir() and len(p.name) == 64)


def half_layers(home: Home) -> list[str]:
    """What a making or removing of a layer left (it must never stay)."""
    root = home.var / "layers"
    return sorted(p.name for p in root.iterdir() if p.name.startswith((".new-", ".old-")))


def _apt_installing(package: str) -> list[int]:
    """Processes (on the host or in a target) running ``apt-get ... install ... package``."""
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[:1] == [b"apt-get"] and b"install" in argv and package.encode() in argv:
            found.append(int(p.name))
    return found


def interrupt_the_package_step(
    argv: list[str], env: dict[str, str], home: Home, package: str
) -> str:
    """Run gbuild (``argv``), freeze its ``apt-get install`` of ``package`` the
    moment it starts and interrupt gbuild (SIGINT) right then, in the middle
    of making a layer.  gbuild must say so and stop everything, and leave no
    layer but those there before and nothing half-made.  Returns its output."""
    before = layer_dirs(home)
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    frozen: list[int] = []
    try:

        def installing() -> list[int]:
            if proc.poll() is not None:
                pytest.fail(f"gbuild ended early: {proc.communicate()[0].decode()[-3000:]}")
            return _apt_installing(package)

        for pid in wait_until(installing, timeout=300, what=f"apt-get to install {package}"):
            os.kill(pid, signal.SIGSTOP)  # no chance to finish: the layer is half-made
            frozen.append(pid)
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=120)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out
    assert "interrupted" in out
    assert "Keeping the installed packages" not in out
    assert layer_dirs(home) == before
    assert half_layers(home) == []
    for pid in frozen:
        wait_until(lambda pid=pid: pid_gone(pid), timeout=30, what="apt-get to be gone")
    return out


__all__ = ["SUITE", "ARCH", "DISTRO", "bridge_exists", "mounts_under", "run_ok"]
