"""The bubblewrap backend on a real Debian bookworm base (root, network to the archive)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitian.home import Home
from gitian.targets import make_target
from gitian.targets.base import Target, TargetConfig
from tests.conftest import wait_until
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
    mounts_under,
)

pytestmark = [pytest.mark.integration, pytest.mark.backend("bwrap")]


@pytest.fixture
def home(base_home: BaseHome) -> Home:
    return base_home("bwrap")


@pytest.fixture
def target(home: Home) -> Iterator[Target]:
    t = make_target("bwrap", TargetConfig(home=home, suite=SUITE, arch=ARCH, distro=DISTRO))
    with t.session():
        yield t
    assert mounts_under(home.root) == [], "stop() left a mount"


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


def test_pid_namespace_and_no_leftover_process(target: Target) -> None:
    r = target.run(["sh", "-c", "echo $$"], capture=True)
    assert int(r.stdout) < 10  # a pid namespace of its own
    # A background process dies with its command's sandbox.
    marker = f"{300 + os.getpid() % 1000}.5"
    target.run(["sh", "-c", f"sleep {marker} & echo started"])
    wait_until(lambda: not sleepers(marker), timeout=5, what="the background sleep to die")


def sleepers(marker: str) -> list[str]:
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes()
            except OSError:
                continue
            if cmd == b"sleep\x00" + marker.encode() + b"\x00":
                found.append(p.name)
    return found


def test_clean_target_is_fast(home: Home) -> None:
    # Not a benchmark (see bench/clean-target.py): a sanity bound only.
    t = make_target("bwrap", TargetConfig(home=home, suite=SUITE, arch=ARCH, distro=DISTRO))
    t0 = time.monotonic()
    with t.session():
        t.run(["true"])
    assert time.monotonic() - t0 < 5


def test_libexec_tools(home: Home, tmp_path: Path) -> None:
    env = {**os.environ, "DISTRO": DISTRO, "USE_BWRAP": "1"}
    env.pop("USE_LXC", None)

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
            "on_target", "-e", "A=1 B=two", "sh", "-c", 'echo "$A $B"; cat; exit 5', input=b"in\n"
        )
        assert (r.returncode, r.stdout) == (5, b"1 two\nin\n"), r.stderr
        r = tool("on_target", "-u", "root", "id", "-un")
        assert r.stdout == b"root\n"
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "x").write_text("x")
        assert tool("copy_to_target", "-q", str(tmp_path / "d"), "build/").returncode == 0
        r = tool("copy_from_target", "build/d", str(tmp_path / "back"))
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "back" / "d" / "x").read_text() == "x"
    finally:
        r = tool("stop_target")
    assert r.returncode == 0, r.stderr
    assert mounts_under(home.root) == []
    assert not (home.var / "target.json").exists()
    r = tool("on_target", "true")
    assert r.returncode == 2 and b"start-target" in r.stderr


def test_make_base_vm_says_what_is_missing(tmp_path: Path) -> None:
    # A PATH without /usr/bin: bwrap is not found, and nothing is started.
    py = Path(sys.executable).parent
    env = {"PATH": str(py), "HOME": "/root"}
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "from gitian.cli.targettools import make_base_vm; make_base_vm()",
            "--bwrap",
            "--distro",
            "debian",
            "--suite",
            "bookworm",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        env=env,
        check=False,
    )
    assert r.returncode == 2
    assert b"bubblewrap" in r.stderr and b"apt-get install" in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("force", [False, True], ids=["new", "force-over-old"])
def test_interrupted_make_base_leaves_nothing(tmp_path: Path, force: bool) -> None:
    """SIGTERM in the middle of the bootstrap: no process, mount or half-made base
    stays; with --force over an existing base, that base stays as it was."""
    from tests.conftest import require_tool

    require_tool("mmdebstrap")
    home = tmp_path / "h"
    old = home / "base-bookworm-amd64"
    if force:
        (old / "etc").mkdir(parents=True)
        (old / "etc/passwd").write_text("debian:x:1000:1000::/home/debian:/bin/sh\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from gitian.cli.targettools import make_base_vm; make_base_vm()",
         "--bwrap", "--distro", "debian", "--suite", "bookworm", "--workdir", str(home),
         *(["--force"] if force else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        # In the middle of it: dpkg is installing the essential packages.
        wait_until(
            lambda: list(home.glob(".base-bookworm-amd64.new.*/var/lib/dpkg/info/*.list")),
            timeout=300,
            what="dpkg to install packages in the new base",
            interval=0.2,
        )
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert b"everything started was stopped" in err
    if force:
        assert [p.name for p in home.iterdir() if p.name.startswith("base")] == [old.name]
        assert [p.name for p in old.rglob("*")] == ["etc", "passwd"]
        assert not list(home.glob(".base-*"))
    else:
        assert list(home.iterdir()) == [] if home.exists() else True
    assert mounts_under(tmp_path) == []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes()
            except OSError:
                continue
            assert os.fsencode(home) not in cmd, cmd
