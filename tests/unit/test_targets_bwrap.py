"""The bwrap backend's command line (no sandbox is started here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitian.errors import TargetError
from gitian.home import Home
from gitian.targets import choose_backend, rootfs
from gitian.targets.base import TargetConfig
from gitian.targets.bwrap import BwrapTarget


@pytest.fixture
def target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BwrapTarget:
    home = Home(tmp_path)
    mp = home.target("bookworm", "amd64")
    (mp / "etc").mkdir(parents=True)
    (mp / "etc/passwd").write_text(
        "root:x:0:0::/root:/bin/sh\ndebian:x:1000:1000::/home/debian:/bin/bash\n"
    )
    (mp / "home/debian").mkdir(parents=True)
    (mp / "root").mkdir()
    monkeypatch.setattr(rootfs, "is_mounted", lambda p: p == mp)
    return BwrapTarget(TargetConfig(home=home, suite="bookworm", arch="amd64", distro="debian"))


def pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_prefix_as_build_user(target: BwrapTarget) -> None:
    env = target.user_env("debian") | {"FOO": "a b"}
    argv = target.exec_prefix(user="debian", env=env, network=False, interactive=False)
    assert argv[0] == "bwrap"
    assert argv[argv.index("--bind") + 1 : argv.index("--bind") + 3] == [
        str(target.rootfs), "/"
    ]  # fmt: skip
    for flag in ("--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
                 "--die-with-parent", "--clearenv"):  # fmt: skip
        assert flag in argv
    assert "--unshare-user" not in argv  # as root it would leave files unmapped
    assert pairs(argv, "--chdir") == ["/home/debian"]
    i = argv.index("--setenv")
    assert argv[i : i + 3] == ["--setenv", "HOME", "/home/debian"]
    assert ["--setenv", "FOO", "a b"] == argv[argv.index("FOO") - 1 : argv.index("FOO") + 2]
    assert argv[-6:] == [
        "--", "setpriv", "--reuid=debian", "--regid=debian", "--init-groups", "--"
    ]  # fmt: skip
    # The host's .deb cache is always there; apt keeps what it downloads.
    assert f"{target.config.home.package_cache}" in argv


def test_prefix_with_network(target: BwrapTarget) -> None:
    argv = target.exec_prefix(
        user="root", env=target.user_env("root"), network=True, interactive=True
    )
    assert "--unshare-net" not in argv and "--share-net" in argv
    assert "/etc/resolv.conf" in argv
    assert pairs(argv, "--chdir") == ["/root"]
    assert argv[-2:] == ["setpriv", "--"]


def test_unknown_user_is_named(target: BwrapTarget) -> None:
    with pytest.raises(TargetError, match="'ubuntu'") as e:
        target.exec_prefix(user="ubuntu", env={}, network=False, interactive=False)
    assert e.value.hint and "DISTRO" in e.value.hint


def test_not_started(tmp_path: Path) -> None:
    t = BwrapTarget(TargetConfig(home=Home(tmp_path), suite="bookworm", arch="amd64"))
    with pytest.raises(TargetError, match="not started"):
        t.exec_prefix(user="ubuntu", env={}, network=False, interactive=False)
    with pytest.raises(TargetError, match="no base at") as e:
        t.reset()
    assert e.value.hint and "make-base-vm --bwrap --distro ubuntu" in e.value.hint


def test_use_bwrap_chooses_it() -> None:
    assert choose_backend(None, {"USE_BWRAP": "1"}) == "bwrap"
    assert choose_backend(None, {"USE_LXC": "1", "USE_BWRAP": "1"}) == "lxc"
    assert choose_backend("bwrap", {"USE_LXC": "1"}) == "bwrap"


def test_unavailable_reason_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import gitian.targets.bwrap as mod

    monkeypatch.setattr(mod, "which", lambda p: None)
    assert "apt-get install bubblewrap" in (BwrapTarget.unavailable_reason() or "")
    monkeypatch.setattr(mod, "which", lambda p: "/usr/bin/" + p)
    monkeypatch.setattr(mod, "is_root", lambda: False)
    assert "root" in (BwrapTarget.unavailable_reason() or "")
