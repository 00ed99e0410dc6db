"""Directory bases and overlay targets: argv, validation, mountinfo (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitian.errors import ToolMissingError, UsageError
from gitian.home import Home
from gitian.targets import rootfs
from gitian.targets.base import BaseOptions, check_env


def test_bootstrap_argv_mmdebstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rootfs.bootstrap, "host_mirror", lambda distro: None)
    spec = rootfs.spec_for(
        BaseOptions(distro="debian", suite="bookworm", arch="i386"), mirror_host=None
    )
    argv = rootfs.bootstrap_argv(spec, Path("/x/base"), "mmdebstrap")
    assert argv[0] == "mmdebstrap"
    assert "--variant=minbase" in argv and "--architectures=i386" in argv
    include = next(a for a in argv if a.startswith("--include="))
    assert include.split("=", 1)[1].split(",") == [
        "pciutils", "build-essential", "git", "subversion", "wget", "lsb-release", "sudo",
        "python3", "locales-all",
    ]  # fmt: skip
    assert argv[-2:] == ["bookworm", "/x/base"]  # no mirror: the tool's default
    assert spec.user == "debian"


def test_bootstrap_argv_debootstrap_with_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = rootfs.spec_for(
        BaseOptions(distro="debian", suite="bookworm", arch="amd64", mirror="http://m.test/d/"),
        mirror_host=None,
    )
    argv = rootfs.bootstrap_argv(spec, Path("/b"), "debootstrap")
    assert argv[0] == "debootstrap" and "--arch=amd64" in argv
    assert argv[-3:] == ["bookworm", "/b", "http://m.test/d"]


def test_mirror_host_goes_through_the_cacher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        rootfs.bootstrap, "host_mirror", lambda distro: "http://archive.test/debian"
    )
    spec = rootfs.spec_for(BaseOptions(distro="debian", suite="bookworm"), mirror_host="10.0.2.2")
    assert spec.mirror == "http://10.0.2.2:3142/archive.test/debian"


@pytest.mark.parametrize(
    "opts",
    [
        BaseOptions(distro="debian", suite="bookworm", arch="arm64"),
        BaseOptions(distro="debian", suite="book worm", arch="amd64"),
        BaseOptions(distro="deb;ian", suite="bookworm", arch="amd64"),
        BaseOptions(distro="debian", suite="bookworm", mirror="deb.example/debian"),
        BaseOptions(distro="debian", suite="bookworm", mirror="http://a b/"),
    ],
)
def test_bad_base_options(opts: BaseOptions) -> None:
    with pytest.raises(UsageError):
        rootfs.spec_for(opts, mirror_host=None)


def test_paths_overlay_cannot_take(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="overlay"):
        rootfs.Overlay.for_home(Home(tmp_path / "a,b"), "bookworm", "amd64")
    o = rootfs.Overlay.for_home(Home(tmp_path), "bookworm", "amd64")
    assert o.lower == tmp_path / "base-bookworm-amd64"
    assert o.mountpoint == tmp_path / "target-bookworm-amd64"
    assert o.upper.parent == tmp_path / "var" / "overlay" / "bookworm-amd64"


def test_make_base_says_what_is_missing_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rootfs, "is_root", lambda: True)
    monkeypatch.setattr(rootfs.bootstrap, "bootstrap_tool", lambda: None)
    with pytest.raises(ToolMissingError, match="mmdebstrap nor debootstrap"):
        rootfs.make_base(
            Home(tmp_path / "h"), BaseOptions(distro="debian", suite="bookworm"), mirror_host=None
        )
    assert not (tmp_path / "h").exists()
    monkeypatch.setattr(rootfs, "is_root", lambda: False)
    assert "root" in (rootfs.missing_for_base_host() or "")


def test_existing_base_is_not_overwritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rootfs, "missing_for_base_host", lambda: None)
    monkeypatch.setattr(rootfs.bootstrap, "bootstrap_tool", lambda: "mmdebstrap")
    (tmp_path / "base-bookworm-amd64").mkdir()
    with pytest.raises(UsageError, match="already exists but is not a root file system"):
        rootfs.make_base(
            Home(tmp_path), BaseOptions(distro="debian", suite="bookworm"), mirror_host=None
        )


def _fake_base(home: Home, user: str = "debian") -> Path:
    base = home.base("bookworm", "amd64")
    (base / "etc").mkdir(parents=True)
    (base / "etc/passwd").write_text(
        f"root:x:0:0::/root:/bin/sh\n{user}:x:1000:1000::/home/u:/bin/sh\n"
    )
    return base


def test_a_base_that_serves_is_kept_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # make-base-vm --lxc after --bwrap (or the reverse): the same base serves both.
    import io

    from gitian import log

    monkeypatch.setattr(rootfs.bootstrap, "bootstrap_tool", lambda: None)  # nothing may run
    shown = io.StringIO()
    monkeypatch.setattr(log.state, "stream", shown)
    home = Home(tmp_path)
    base = _fake_base(home)
    before = sorted(p.name for p in tmp_path.iterdir())
    got = rootfs.make_base(home, BaseOptions(distro="debian", suite="bookworm"), mirror_host=None)
    assert got == base and sorted(p.name for p in tmp_path.iterdir()) == before
    assert shown.getvalue() == (
        "base-bookworm-amd64 is already a base for debian bookworm amd64, shared by "
        "bubblewrap and LXC; kept (--force makes it anew)\n"
    )


def test_a_base_for_another_distro_is_refused_naming_force(tmp_path: Path) -> None:
    home = Home(tmp_path)
    _fake_base(home, user="ubuntu")
    with pytest.raises(UsageError) as e:
        rootfs.make_base(home, BaseOptions(distro="debian", suite="bookworm"), mirror_host=None)
    assert "already exists but has no build user 'debian'" in str(e.value)
    assert "--force" in (e.value.hint or "")


def test_force_makes_a_base_anew(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = Home(tmp_path)
    _fake_base(home)
    opts = BaseOptions(distro="debian", suite="bookworm", force=True)
    # It goes on to bootstrap (and so says what the host lacks) ...
    monkeypatch.setattr(rootfs, "is_root", lambda: True)
    monkeypatch.setattr(rootfs.bootstrap, "bootstrap_tool", lambda: None)
    with pytest.raises(ToolMissingError, match="mmdebstrap nor debootstrap"):
        rootfs.make_base(home, opts, mirror_host=None)
    # ... but never under a target that runs on the old base.
    monkeypatch.setattr(rootfs, "is_mounted", lambda p: p == home.target("bookworm", "amd64"))
    with pytest.raises(UsageError, match="is running; stop it first"):
        rootfs.make_base(home, opts, mirror_host=None)
    assert (home.base("bookworm", "amd64") / "etc/passwd").is_file()


def test_mountinfo_unescape() -> None:
    assert rootfs._unescape(r"/a\040b\134c") == "/a b\\c"
    assert rootfs._unescape("/plain") == "/plain"
    assert rootfs.is_mounted(Path("/proc"))
    assert not rootfs.is_mounted(Path("/no/such/mount/point"))


def test_env_names_checked() -> None:
    check_env({"A_1": "x y", "_b": ""})
    for bad in ({"1A": "x"}, {"A-B": "x"}, {"A B": "x"}, {"A": "x\0"}):
        with pytest.raises(UsageError):
            check_env(bad)


def test_drop_privileges() -> None:
    assert rootfs.drop_privileges("root") == ["setpriv", "--"]
    argv = rootfs.drop_privileges("debian")
    assert argv[-1] == "--" and "--reuid=debian" in argv and "--init-groups" in argv


def test_passwd_users(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(
        "root:x:0:0::/root:/bin/sh\ndebian:x:1000:1000::/home/debian:/bin/bash\n"
    )
    assert rootfs.passwd_users(tmp_path) == {"root", "debian"}
    assert rootfs.passwd_users(tmp_path / "nothing") == set()


def test_never_removes_a_tree_with_mounts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "half-made"
    (d / "dev").mkdir(parents=True)
    monkeypatch.setattr(rootfs, "mounts_below", lambda p: [str(d / "dev")])
    with pytest.raises(rootfs.TargetError, match="still mounted"):
        rootfs._remove_tree(d)
    assert (d / "dev").is_dir()
    monkeypatch.undo()
    rootfs._remove_tree(d)
    assert not d.exists()
    assert rootfs.mounts_below(Path("/proc")) and rootfs.mounts_below(tmp_path) == []
