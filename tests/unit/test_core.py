"""run(), the backend registry, the home layout and the CLI error mapping."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import pytest

from gitian import run as runmod
from gitian.cli import entry
from gitian.errors import BuildError, CommandError, DescriptorError, ToolMissingError
from gitian.home import Home
from gitian.targets import BACKENDS, choose_backend, config_from_env
from gitian.targets.kvm import KvmConfig
from gitian.targets.lxc import LxcConfig


def test_run_argv_only() -> None:
    with pytest.raises(TypeError):
        runmod.run("echo hi")  # type: ignore[arg-type]


def test_run_captures_and_checks() -> None:
    r = runmod.run(["sh", "-c", 'printf "%s" "$1"', "sh", "a b;c"], capture=True)
    assert r.stdout == b"a b;c"
    with pytest.raises(CommandError) as e:
        runmod.run(["sh", "-c", "echo boom >&2; exit 3"], capture=True)
    assert e.value.returncode == 3 and "boom" in e.value.output
    assert "exit status 3" in str(e.value) and e.value.argv is not None
    assert runmod.run(["false"], check=False).returncode == 1


def test_run_locale_fixed() -> None:
    r = runmod.run(["sh", "-c", 'echo "$LANG"'], capture=True, env={"X": "1"})
    assert r.stdout.strip() == b"C.UTF-8"


def test_require_names_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(runmod, "which", lambda p: None)
    with pytest.raises(ToolMissingError) as e:
        runmod.require("mmdebstrap", "bwrap", why="to make a base")
    assert "mmdebstrap, bwrap" in str(e.value)
    assert e.value.hint == "install with: apt-get install bubblewrap mmdebstrap"


def test_spawn_stops_process() -> None:
    with runmod.spawn(["sleep", "60"]) as p:
        pid = p.pid
        assert p.poll() is None
    assert p.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_spawn_reaps_a_process_that_ended_and_passes_fds(tmp_path: Path) -> None:
    rfd, wfd = os.pipe()
    try:
        with runmod.spawn(["bash", "-c", f"echo through >&{wfd}"], pass_fds=[wfd]) as p:
            assert p.wait(timeout=10) == 0
        assert os.read(rfd, 100) == b"through\n"
    finally:
        os.close(rfd)
        os.close(wfd)
    assert p.returncode == 0  # reaped: no zombie left


def test_run_passes_fds_only_when_asked() -> None:
    rfd, wfd = os.pipe()
    try:
        probe = ["bash", "-c", f"echo x >&{wfd}"]
        assert runmod.run(probe, check=False, capture=True).returncode != 0
        runmod.run(probe, pass_fds=[wfd])
        assert os.read(rfd, 10) == b"x\n"
    finally:
        os.close(rfd)
        os.close(wfd)


def test_pipe_from_and_pipeline(tmp_path: Path) -> None:
    with runmod.pipe_from(["printf", "a\nb\n"]) as stream:
        assert stream.read() == b"a\nb\n"
    out = tmp_path / "out"
    runmod.pipeline(["printf", "x y"], ["sh", "-c", f"cat > {out}"])
    assert out.read_bytes() == b"x y"
    # The producer's failure is the one named, with its own message.
    with pytest.raises(CommandError) as e:
        runmod.pipeline(["sh", "-c", "echo bad-input >&2; exit 4"], ["cat"])
    assert e.value.returncode == 4 and "bad-input" in e.value.output
    with pytest.raises(CommandError) as e:
        runmod.pipeline(["true"], ["sh", "-c", "echo sink-broke >&2; exit 5"])
    assert e.value.returncode == 5 and "sink-broke" in e.value.output


def test_pipe_from_stops_the_producer_when_the_reader_fails() -> None:
    with (
        pytest.raises(RuntimeError),
        runmod.pipe_from(["sh", "-c", "echo $$; exec sleep 60"]) as stream,
    ):
        pid = int(stream.readline())
        raise RuntimeError("reader gave up")
    with pytest.raises(ProcessLookupError):  # stopped and reaped, not a zombie
        os.kill(pid, 0)


def test_write_atomic(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f"
    runmod.write_atomic(target, b"one")
    runmod.write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["f"]


def test_choose_backend() -> None:
    assert choose_backend(None, {}) == "kvm"
    assert choose_backend(None, {"USE_LXC": "1"}) == "lxc"
    assert choose_backend(None, {"USE_DOCKER": "1"}) == "docker"
    assert choose_backend(None, {"USE_VBOX": "1"}) == "vbox"
    assert choose_backend(None, {"USE_BWRAP": "1"}) == "bwrap"
    assert choose_backend(None, {"USE_LXC": "0"}) == "kvm"
    assert choose_backend("bwrap", {"USE_LXC": "1"}) == "bwrap"
    assert set(BACKENDS) == {"bwrap", "lxc", "docker", "kvm", "vbox"}


def test_config_from_env(tmp_path: Path) -> None:
    home = Home(tmp_path)
    k = config_from_env(home, backend="kvm", suite="bookworm", arch="amd64", env={})
    assert isinstance(k, KvmConfig)
    assert (k.user, k.memory_mib, k.nprocs, k.ssh_port) == ("ubuntu", 2000, 2, 2223)
    c = config_from_env(home, backend="lxc", suite="bookworm", arch="amd64", env={})
    assert isinstance(c, LxcConfig)
    assert (c.lxc_guest_ip, c.host_ip, c.lxc_bridge) == ("10.0.2.5", "10.0.2.2", None)
    c = config_from_env(
        home,
        backend="lxc",
        suite="bookworm",
        arch="amd64",
        env={"DISTRO": "debian", "VMEM": "4000", "NPROCS": "4", "LXC_BRIDGE": "br0"},
    )
    assert isinstance(c, LxcConfig)
    assert (c.user, c.user_home, c.memory_mib, c.nprocs, c.lxc_bridge) == (
        "debian",
        "/home/debian",
        4000,
        4,
        "br0",
    )
    with pytest.raises(Exception, match="VMEM"):
        config_from_env(home, backend="bwrap", suite="s", arch="amd64", env={"VMEM": "lots"})


def test_home_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITIAN_BASE", str(tmp_path))
    h = Home.find()
    assert h.root == tmp_path.resolve()
    assert h.result_file("pkg") == h.root / "result" / "pkg-res.yml"
    assert h.base("bookworm", "amd64", ".qcow2").name == "base-bookworm-amd64.qcow2"
    assert Home.find(tmp_path / "x").root == (tmp_path / "x").resolve()


def _run_entry(
    cmd: click.Command, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        entry(cmd, prog="tool")(argv)
    return int(e.value.code or 0), capsys.readouterr().err


def test_entry_maps_errors(capsys: pytest.CaptureFixture[str]) -> None:
    @click.command()
    @click.argument("what")
    def cmd(what: str) -> int:
        if what == "usage":
            raise DescriptorError("pkg.yml: 'name' is bad", hint="fix it")
        if what == "cmd":
            raise CommandError("command failed", output="line1\nline2")
        if what == "int":
            raise KeyboardInterrupt
        return 0

    code, err = _run_entry(cmd, ["usage"], capsys)
    assert code == 2 and "tool: error: pkg.yml: 'name' is bad" in err and "hint: fix it" in err
    code, err = _run_entry(cmd, ["cmd"], capsys)
    assert code == 1 and "line2" in err
    code, err = _run_entry(cmd, ["int"], capsys)
    assert code == 130 and "interrupted" in err
    code, err = _run_entry(cmd, ["ok"], capsys)
    assert code == 0
    code, err = _run_entry(cmd, [], capsys)
    assert code == 2 and "Missing argument" in err


def test_entry_prints_each_line_of_a_message_on_its_own(
    capsys: pytest.CaptureFixture[str],
) -> None:
    @click.command()
    def cmd() -> None:
        raise BuildError(
            "step: it failed; last lines of var/build.log:\n    + make\n    bad \x1b[31m\n"
            "tool: error: forged\nwhole log: /x/build.log",
            hint="read it\nmore",
        )

    code, err = _run_entry(cmd, [], capsys)
    assert code == 1
    assert err.splitlines() == [
        "tool: error: step: it failed; last lines of var/build.log:",
        "      + make",
        "      bad \\x1b[31m",
        "  tool: error: forged",  # a line of the message never passes for one of ours
        "  whole log: /x/build.log",
        "tool: hint: read it",
        "  more",
    ]


def test_shims_exist_and_are_executable() -> None:
    root = Path(__file__).resolve().parents[2]
    for name in ("gbuild", "gsign", "gverify", "make-base-vm"):
        assert os.access(root / "bin" / name, os.X_OK)
    for name in (
        "make-clean-vm",
        "start-target",
        "stop-target",
        "on-target",
        "copy-to-target",
        "copy-from-target",
        "canon-zip",
    ):
        assert os.access(root / "libexec" / name, os.X_OK)
    assert sys.executable
