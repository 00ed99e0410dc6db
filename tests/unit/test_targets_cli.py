"""The classic target tools' command lines (no target is started here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gitian.cli import targettools as tt
from gitian.targets.base import BaseOptions, TargetConfig


def call(main: Any, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(argv)
    return int(e.value.code or 0), capsys.readouterr().err


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for v in ("USE_LXC", "USE_DOCKER", "USE_VBOX", "USE_BWRAP", "DISTRO", "LXC_SUITE",
              "LXC_ARCH", "GITIAN_BASE", "MIRROR_HOST"):  # fmt: skip
        monkeypatch.delenv(v, raising=False)


class Recorder:
    """Stands in for a backend class to see what the CLI asks of it."""

    made: list[BaseOptions] = []
    reason: str | None = None

    def __init__(self, config: TargetConfig) -> None:
        self.config = config

    @classmethod
    def unavailable_reason(cls, *, for_base: bool = False, config: object = None) -> str | None:
        return cls.reason

    def make_base(self, options: BaseOptions) -> None:
        Recorder.made.append(options)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> type[Recorder]:
    Recorder.made = []
    Recorder.reason = None
    monkeypatch.setattr(tt, "backend_class", lambda name: Recorder)
    monkeypatch.setattr(tt, "make_target", lambda name, cfg: Recorder(cfg))
    return Recorder


def test_make_base_vm_flags(
    recorder: type[Recorder], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = call(
        tt.make_base_vm,
        ["--bwrap", "--distro", "debian", "--suite", "bookworm", "--arch", "i386",
         "--mirror", "http://m.test/debian", "--workdir", str(tmp_path)],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    (opts,) = recorder.made
    assert (opts.distro, opts.suite, opts.arch, opts.mirror) == (
        "debian", "bookworm", "i386", "http://m.test/debian"
    )  # fmt: skip
    assert opts.disksize_mb == 12287


def test_make_base_vm_force(
    recorder: type[Recorder], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _ = call(tt.make_base_vm, ["--bwrap", "--workdir", str(tmp_path)], capsys)
    code, _ = call(tt.make_base_vm, ["--bwrap", "--force", "--workdir", str(tmp_path)], capsys)
    assert code == 0
    assert [o.force for o in recorder.made] == [False, True]


def test_make_base_vm_defaults_are_classic(
    recorder: type[Recorder], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _ = call(tt.make_base_vm, ["--lxc", "--workdir", str(tmp_path)], capsys)
    assert code == 0
    assert (recorder.made[0].distro, recorder.made[0].suite) == ("ubuntu", "xenial")


def test_make_base_vm_says_what_is_missing_before_anything(
    recorder: type[Recorder], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    recorder.reason = "debootstrap is missing (apt-get install debootstrap)"
    code, err = call(tt.make_base_vm, ["--lxc", "--workdir", str(tmp_path / "h")], capsys)
    assert code == 2
    assert "cannot make a base for the lxc backend: debootstrap is missing" in err
    assert recorder.made == [] and not (tmp_path / "h").exists()


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["--lxc", "--bwrap"], "choose one of --lxc / --bwrap"),
        (["--lxc", "--backend", "bwrap"], "contradicts"),
        (["--bwrap", "--disksize", "0"], "--disksize"),
        (["--backend", "nosuch"], "nosuch"),
    ],
)
def test_make_base_vm_bad_usage(
    recorder: type[Recorder], argv: list[str], msg: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = call(tt.make_base_vm, argv, capsys)
    assert code == 2 and msg in err


def test_start_target_arguments(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err = call(tt.start_target, ["48", "bookworm-amd64", "--workdir", str(tmp_path)], capsys)
    assert code == 2 and "BITS" in err
    code, err = call(tt.start_target, ["64", "bookworm", "--workdir", str(tmp_path)], capsys)
    assert code == 2 and "SUITE-ARCH" in err


def test_on_target_without_started_target(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, err = call(tt.on_target, ["--backend", "bwrap", "--workdir", str(tmp_path), "id"], capsys)
    assert code == 2 and "start-target" in err


def test_stop_target_without_target_is_quiet(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, err = call(tt.stop_target, ["--workdir", str(tmp_path)], capsys)
    assert code == 0 and err == ""


def test_env_assignments() -> None:
    assert tt._assignments(("A=1 B=x=y", "C=")) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(tt.UsageError):
        tt._assignments(("NOVALUE",))


def test_state_file_round_trip(tmp_path: Path) -> None:
    home = tt.Home(tmp_path)
    assert tt.TargetState.load(home) is None
    st = tt.TargetState("lxc", "bookworm", "i386", "debian")
    st.save(home)
    assert json.loads((tmp_path / "var/target.json").read_text())["backend"] == "lxc"
    assert tt.TargetState.load(home) == st
    (tmp_path / "var/target.json").write_text("{")
    with pytest.raises(tt.UsageError, match="unreadable"):
        tt.TargetState.load(home)
    tt.TargetState.remove(home)
    assert tt.TargetState.load(home) is None


def test_target_from_state_and_classic_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tt.Home(tmp_path)
    monkeypatch.setattr(tt, "backend_class", lambda name: Recorder)
    monkeypatch.setattr(tt, "make_target", lambda name, cfg: Recorder(cfg))
    Recorder.reason = None
    monkeypatch.setenv("LXC_SUITE", "trixie")
    monkeypatch.setenv("LXC_ARCH", "i386")
    monkeypatch.setenv("USE_LXC", "1")
    monkeypatch.setenv("DISTRO", "debian")
    name, t = tt._target(home, None)
    assert name == "lxc" and (t.config.suite, t.config.arch, t.config.user) == (
        "trixie", "i386", "debian"
    )  # fmt: skip
    tt.TargetState("bwrap", "bookworm", "amd64", "debian").save(home)
    name, t = tt._target(home, None)
    assert name == "bwrap" and t.config.suite == "bookworm"


# -- no backend chosen, no KVM base, another backend's base here (issue 14 item 3) --


@pytest.fixture
def dir_base_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TargetConfig:
    """A home with a bubblewrap/LXC base, no KVM base; no docker on PATH."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    home = tt.Home(tmp_path / "h")
    (home.base("bookworm", "amd64") / "etc").mkdir(parents=True)
    return TargetConfig(home=home, suite="bookworm", arch="amd64", distro="debian")


def test_default_backend_names_the_variable(dir_base_only: TargetConfig) -> None:
    from gitian.targets import check_default_backend

    with pytest.raises(tt.UsageError) as e:
        check_default_backend(None, {}, dir_base_only)
    assert str(e.value) == (
        "no KVM base for bookworm amd64 here (KVM is the backend when nothing chooses one), "
        "but there is a bubblewrap/LXC base (base-bookworm-amd64/): set USE_BWRAP=1 or "
        "USE_LXC=1 (or pass --backend bwrap|lxc)"
    )
    assert (
        e.value.hint
        == "or make a KVM base: make-base-vm --distro debian --suite bookworm --arch amd64"
    )
    # A backend chosen by either means is left to say what it lacks itself.
    check_default_backend("kvm", {}, dir_base_only)
    check_default_backend(None, {"USE_LXC": "1"}, dir_base_only)


def test_default_backend_with_a_kvm_base_or_no_base_at_all(dir_base_only: TargetConfig) -> None:
    from gitian.targets import check_default_backend

    home = dir_base_only.home
    for suffix in (".qcow2", ".vmlinuz", ".initrd"):
        home.base("bookworm", "amd64", suffix).write_bytes(b"")
    check_default_backend(None, {}, dir_base_only)  # KVM has its base: nothing to say
    other = TargetConfig(home=home, suite="trixie", arch="amd64", distro="debian")
    check_default_backend(None, {}, other)  # no base anywhere: KVM says "make one"


def test_default_backend_message_for_docker() -> None:
    from gitian.targets import other_bases_error

    config = TargetConfig(home=tt.Home(Path("/g")), suite="bookworm", arch="i386", distro="debian")
    msg = str(other_bases_error(config, ["docker"]))
    assert msg.endswith(
        "but there is a Docker base image: set USE_DOCKER=1 (or pass --backend docker)"
    )
    msg = str(other_bases_error(config, ["bwrap", "docker"]))
    assert "a bubblewrap/LXC base (base-bookworm-i386/) and a Docker base image: " in msg
    assert "USE_BWRAP=1 or USE_LXC=1 or USE_DOCKER=1 (or pass --backend bwrap|lxc|docker)" in msg


def test_make_clean_vm_and_start_target_name_the_variable(
    dir_base_only: TargetConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    where = ["--suite", "bookworm", "--arch", "amd64", "--workdir", str(dir_base_only.home.root)]
    code, err = call(tt.make_clean_vm, where, capsys)
    assert code == 2 and "set USE_BWRAP=1 or USE_LXC=1" in err, err
    code, err = call(tt.start_target, ["64", "bookworm-amd64", "--workdir", where[-1]], capsys)
    assert code == 2 and "set USE_BWRAP=1 or USE_LXC=1" in err, err
    assert not (dir_base_only.home.var / "target.json").exists()


def test_make_base_vm_lists_and_clears_layers_without_making_a_base(
    recorder: type[Recorder], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    home = tmp_path / "home"
    code, _ = call(tt.make_base_vm, ["--workdir", str(home), "--list-layers"], capsys)
    assert code == 0 and recorder.made == []
    layer = home / "var" / "layers" / ("f" * 64)
    layer.mkdir(parents=True)
    (layer / "key.json").write_text(json.dumps({"suite": "bookworm", "arch": "amd64",
                                                "packages": ["gcc"]}))  # fmt: skip
    (layer / "meta.json").write_text(json.dumps({"backend": "bwrap", "size": 2_500_000}))
    (layer / "manifest").write_text("")
    main = tt.make_base_vm
    with pytest.raises(SystemExit):
        main(["--workdir", str(home), "--list-layers"])
    out = capsys.readouterr().out
    assert "ffffffffffff  bwrap" in out and "2.5 MB" in out and out.endswith("1 layer(s), 2.5 MB\n")
    with pytest.raises(SystemExit):
        main(["--workdir", str(home), "--clear-layers", "--lxc"])  # only LXC's: none
    assert layer.is_dir() and "removed 0 layer(s)" in capsys.readouterr().out
    dropped: list[Path] = []
    monkeypatch.setattr(Recorder, "drop_layer", lambda self, p: dropped.append(p), raising=False)
    with pytest.raises(SystemExit):
        main(["--workdir", str(home), "--clear-layers"])
    assert not layer.exists() and dropped == [layer]
    assert "removed 1 layer(s), 2.5 MB" in capsys.readouterr().out
    assert recorder.made == []
