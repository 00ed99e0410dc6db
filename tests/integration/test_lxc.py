"""The LXC backend on a real Debian bookworm base (root, LXC 5, network to the archive)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitian.errors import TargetError
from gitian.home import Home
from gitian.targets import make_target
from gitian.targets.base import Target
from gitian.targets.lxc import LxcConfig, LxcTarget, bridge_exists
from tests.integration.conftest import (
    ARCH,
    DISTRO,
    SUITE,
    BaseHome,
    check_base_contents,
    check_copies,
    check_grab_packages,
    check_network,
    check_reset,
    check_users_env_stdin_status,
    make_base_vm,
    mounts_under,
)

pytestmark = [pytest.mark.integration, pytest.mark.backend("lxc")]


@pytest.fixture
def home(base_home: BaseHome) -> Home:
    return base_home("lxc")


def config(home: Home, **kw: object) -> LxcConfig:
    return dataclasses.replace(
        LxcConfig(home=home, suite=SUITE, arch=ARCH, distro=DISTRO),
        **kw,  # type: ignore[arg-type]
    )


def lxc_running(t: LxcTarget) -> list[str]:
    r = subprocess.run(
        ["lxc-ls", "-P", str(t.lxcpath), "--running"], capture_output=True, text=True, check=False
    )
    return r.stdout.split()


@pytest.fixture(params=[False, True], ids=["lxc-attach", "LXC_EXECUTE"])
def target(request: pytest.FixtureRequest, home: Home, lxc_net: str) -> Iterator[Target]:
    t = make_target("lxc", config(home, lxc_execute=request.param))
    assert isinstance(t, LxcTarget)
    with t.session():
        yield t
    assert mounts_under(home.root) == [], "stop() left a mount"
    assert lxc_running(t) == [], "stop() left a container"


def test_commands(target: Target) -> None:
    check_users_env_stdin_status(target)


def test_copies(target: Target, tmp_path: Path) -> None:
    check_copies(target, tmp_path)


def test_base_is_ready(target: Target) -> None:
    check_base_contents(target)


def test_network_only_when_asked(target: Target, home: Home) -> None:
    check_network(target, home)


def test_grab_packages(target: Target, home: Home) -> None:
    check_grab_packages(target, home)


def test_reset_and_reuse(target: Target) -> None:
    check_reset(target)


def test_config_rendered(target: Target, home: Home) -> None:
    text = (home.var / "lxc.config").read_text()
    assert f"lxc.rootfs.path = dir:{home.target(SUITE, ARCH)}" in text
    assert "lxc.apparmor.profile = unconfined" in text
    assert "lxc.environment = PATH=/usr/local/sbin:" in text
    assert "lxc.net.0.link = lxcbr0" in text
    assert "${" not in text


def test_missing_bridge_is_named(home: Home) -> None:
    t = make_target("lxc", config(home, lxc_bridge="nosuchbr9"))
    with pytest.raises(TargetError, match="LXC_BRIDGE=nosuchbr9"):
        with t.session():
            pass
    assert mounts_under(home.root) == []


def test_lxc_net_brought_up_and_down(base_home: BaseHome) -> None:
    """Without the session's lxc_net fixture: if lxcbr0 is absent, the target
    brings it up and stops it again; if present, it is left alone."""
    home = base_home("lxc")
    before = bridge_exists("lxcbr0")
    t = make_target("lxc", config(home))
    with t.session():
        assert bridge_exists("lxcbr0")
        t.run(["apt-get", "-q", "update"], user="root", network=True, capture=True)
    assert bridge_exists("lxcbr0") == before


def test_libexec_tools(home: Home, tmp_path: Path, lxc_net: str) -> None:
    env = {**os.environ, "DISTRO": DISTRO, "USE_LXC": "1"}
    env.pop("USE_BWRAP", None)

    def tool(
        name: str, *args: str, input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-c", f"from gitian.cli.targettools import {name}; {name}()", *args],
            input=input,
            capture_output=True,
            env=env,
            cwd=home.root,
            check=False,
        )

    assert tool("make_clean_vm", "--suite", SUITE, "--arch", ARCH).returncode == 0
    r = tool("start_target", "64", f"{SUITE}-{ARCH}")
    assert r.returncode == 0, r.stderr
    try:
        r = tool(
            "on_target", "-e", "A=1", "sh", "-c", 'echo "$A $(id -un)"; cat; exit 4', input=b"in\n"
        )
        assert (r.returncode, r.stdout) == (4, b"1 debian\nin\n"), r.stderr
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "x").write_text("x")
        assert tool("copy_to_target", str(tmp_path / "d"), "build/").returncode == 0
        r = tool("copy_from_target", "build/d", str(tmp_path / "back"))
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "back" / "d" / "x").read_text() == "x"
    finally:
        r = tool("stop_target")
    assert r.returncode == 0, r.stderr
    assert mounts_under(home.root) == []


def test_make_base_vm_lxc_then_bwrap_share_one_base(home: Home) -> None:
    """The session's base was made by ``make-base-vm --lxc`` (conftest; ``home``
    links to it): asking for a bubblewrap base, or an LXC one again, keeps it
    and says so in one line."""
    base = home.base(SUITE, ARCH)
    before = [(p, p.stat().st_ino, p.stat().st_mtime_ns) for p in (base, base / "etc/passwd")]
    for backend in ("bwrap", "lxc"):
        r = make_base_vm(home, backend)
        assert r.returncode == 0, r.stderr
        said = [line.strip() for line in r.stderr.splitlines()]
        assert said[0] == (
            f"{base.name} is already a base for {DISTRO} {SUITE} {ARCH}, shared by "
            "bubblewrap and LXC; kept (--force makes it anew)"
        ), r.stderr
        assert "Bootstrapping" not in r.stderr
    after = [(p, p.stat().st_ino, p.stat().st_mtime_ns) for p in (base, base / "etc/passwd")]
    assert after == before
