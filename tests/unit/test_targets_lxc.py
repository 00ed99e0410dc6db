"""The LXC backend: rendered config, network choice, lxcbr0 bookkeeping, argv."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gitian.home import Home
from gitian.targets import base, lxc
from gitian.targets.lxc import LxcConfig, LxcNetUsers, LxcTarget


def make(tmp_path: Path, **kw: object) -> LxcTarget:
    cfg = LxcConfig(home=Home(tmp_path), suite="bookworm", arch="amd64", distro="debian")
    return LxcTarget(dataclasses.replace(cfg, **kw))  # type: ignore[arg-type]


def test_names_unique_per_home(tmp_path: Path) -> None:
    a, b = make(tmp_path / "a"), make(tmp_path / "b")
    assert a.container.startswith("gitian-") and a.container != b.container
    assert a.container == make(tmp_path / "a").container


def test_config_with_classic_bridge(tmp_path: Path) -> None:
    t = make(tmp_path, lxc_bridge="br0", lxc_guest_ip="10.0.2.7", host_ip="10.0.2.2", arch="i386")
    net = t.net()
    assert not net.managed
    text = t.render_config(net)
    assert "lxc.net.0.link = br0" in text
    assert "lxc.net.0.ipv4.address = 10.0.2.7/24" in text
    assert "lxc.net.0.ipv4.gateway = 10.0.2.2" in text
    assert "lxc.arch = i686" in text
    assert f"lxc.rootfs.path = dir:{tmp_path}/target-bookworm-i386" in text
    assert f"lxc.mount.entry = {tmp_path}/var/cache/debs var/cache/apt/archives" in text
    assert "lxc.apparmor.profile = unconfined" in text
    assert "lxc.environment = PATH=" + base.PATH in text
    assert "$" not in text.split("SPDX")[1]


def test_own_nat_bridge_address(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lxc, "LXC_NET_DEFAULTS", ())
    net = make(tmp_path).net()
    assert net.managed and net.bridge == "lxcbr0" and net.gateway == "10.0.3.1"
    addr, _, plen = net.address.partition("/")
    assert plen == "24" and addr.startswith("10.0.3.") and int(addr.rsplit(".", 1)[1]) > 150


def test_lxc_net_settings_read_defaults(tmp_path: Path) -> None:
    f = tmp_path / "lxc-net"
    f.write_text('USE_LXC_BRIDGE="true"\nLXC_BRIDGE="gbr0"\nLXC_ADDR=192.168.77.1 # x\n')
    s = lxc.lxc_net_settings((f, tmp_path / "missing"))
    assert s == {"LXC_BRIDGE": "gbr0", "LXC_ADDR": "192.168.77.1", "LXC_NETMASK": "255.255.255.0"}


def test_lxcbr0_stopped_only_by_who_started_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    up = {"v": False}

    def fake_run(argv: list[str], **kw: object) -> None:
        calls.append(argv[1:])
        up["v"] = argv[1] == "start"

    monkeypatch.setattr(lxc, "run", fake_run)
    monkeypatch.setattr(lxc, "require", lambda *a, **k: None)
    monkeypatch.setattr(lxc, "bridge_exists", lambda name: up["v"])
    users = LxcNetUsers("lxcbr0", run_dir=tmp_path / "run")
    users.acquire("a")
    users.acquire("b")
    assert calls == [["start"]]
    users.release("a")
    assert calls == [["start"]]  # b still uses it
    users.release("b")
    assert calls == [["start"], ["stop"]]
    # Already there (someone else's): never stopped by us.
    calls.clear()
    up["v"] = True
    users.acquire("c")
    users.release("c")
    assert calls == []


def test_attach_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = make(tmp_path)
    monkeypatch.setattr(LxcTarget, "check_ready", lambda self, user: None)
    monkeypatch.setattr(LxcTarget, "_state", lambda self: "RUNNING")
    argv = t.exec_prefix(
        user="debian", env={"HOME": "/home/debian", "A": "1"}, network=False, interactive=False
    )
    assert argv[:6] == ["lxc-attach", "-n", t.container, "-P", str(t.lxcpath), "--clear-env"]
    i = argv.index("/usr/bin/env")
    assert argv[i : i + 6] == [
        "/usr/bin/env",
        "-i",
        "-C",
        "/home/debian",
        "HOME=/home/debian",
        "A=1",
    ]
    assert ["unshare", "--net", "--"] == argv[i + 6 : i + 9]
    assert argv[-1] == "--" and "--reuid=debian" in argv
    argv = t.exec_prefix(user="root", env={}, network=True, interactive=False)
    assert "unshare" not in argv


def test_execute_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = make(tmp_path, lxc_execute=True)
    monkeypatch.setattr(LxcTarget, "check_ready", lambda self, user: None)
    a = t.exec_prefix(user="root", env={}, network=True, interactive=False)
    b = t.exec_prefix(user="root", env={}, network=True, interactive=False)
    assert a[0] == "lxc-execute" and a[a.index("-f") + 1] == str(t.config_file)
    assert a[2] != b[2]  # each command its own container name


def test_stale_users_do_not_keep_the_bridge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    up = {"v": False}

    def fake_run(argv: list[str], **kw: object) -> None:
        calls.append(argv[1])
        up["v"] = argv[1] == "start"

    monkeypatch.setattr(lxc, "run", fake_run)
    monkeypatch.setattr(lxc, "require", lambda *a, **k: None)
    monkeypatch.setattr(lxc, "bridge_exists", lambda name: up["v"])
    users = LxcNetUsers("lxcbr0", run_dir=tmp_path / "run")
    users.acquire("mine")
    # Left behind by a crashed build whose target is gone, and by a dead process.
    (tmp_path / "run/users/crashed").write_text(f"mount {tmp_path}/no-such-target\n")
    (tmp_path / "run/users/dead").write_text("pid 999999999\n")
    # Still mounted: a live target keeps the bridge.
    (tmp_path / "run/users/live").write_text("mount /proc\n")
    users.release("mine")
    assert calls == ["start"]
    assert sorted(p.name for p in (tmp_path / "run/users").iterdir()) == ["live"]
    (tmp_path / "run/users/live").unlink()
    users.acquire("again")
    users.release("again")
    assert calls == ["start", "stop"]
