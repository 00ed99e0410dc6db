"""The SSH layer's pure parts: the remote command line, env checks, log tails."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gitian.errors import TargetError
from gitian.ssh import remote_command, tail

ENV = {"HOME": "/", "USER": "root", "LOGNAME": "root", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def run_locally(cmd: str) -> subprocess.CompletedProcess[bytes]:
    # The remote side hands the line to a POSIX shell; so do we.
    return subprocess.run(["sh", "-c", cmd], capture_output=True, check=False)


@pytest.mark.parametrize(
    "arg",
    ["plain", "two words", "it's", '"dq"', "$HOME", "`id`", "a;b", "*", "new\nline", "-n", ""],
)
def test_every_argument_reaches_the_command_verbatim(arg: str) -> None:
    cmd = remote_command(["printf", "%s|", arg, "end"], user="root", env=ENV)
    res = run_locally(cmd)
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode() == f"{arg}|end|"


def test_environment_is_exactly_what_was_given() -> None:
    env = dict(ENV, GBUILD="x y", ODD="a'b$c")
    res = run_locally(remote_command(["env"], user="root", env=env))
    got = dict(line.split("=", 1) for line in res.stdout.decode().splitlines())
    got.pop("PWD", None)  # sh sets it
    assert got == env


def test_runs_in_home_and_passes_exit_status(tmp_path: Path) -> None:
    env = dict(ENV, HOME=str(tmp_path))
    res = run_locally(remote_command(["sh", "-c", "pwd; exit 7"], user="root", env=env))
    assert res.returncode == 7
    assert res.stdout.decode().strip() == str(tmp_path)


def test_missing_home_fails_instead_of_running_elsewhere(tmp_path: Path) -> None:
    env = dict(ENV, HOME=str(tmp_path / "nope"))
    res = run_locally(remote_command(["touch", "marker"], user="root", env=env))
    assert res.returncode == 125
    assert not (Path.cwd() / "marker").exists()


def test_other_users_go_through_sudo() -> None:
    cmd = remote_command(["id"], user="debian", env=ENV)
    assert cmd.startswith("sudo -u debian -- env -i ")


@pytest.mark.parametrize("name", ["A B", "1X", "X=Y", "", "A;B"])
def test_bad_env_names_are_refused(name: str) -> None:
    with pytest.raises(TargetError, match="invalid environment variable name"):
        remote_command(["true"], user="root", env={name: "v"})


def test_empty_command_is_refused() -> None:
    with pytest.raises(TargetError):
        remote_command([], user="root", env=ENV)


def test_tail_of_a_console_log(tmp_path: Path) -> None:
    f = tmp_path / "target.log"
    f.write_bytes(b"".join(b"line %d\r\n" % i for i in range(100)) + b"\xff end\n")
    t = tail(f, lines=3)
    assert t.splitlines() == ["line 98", "line 99", "\ufffd end"]
    assert tail(tmp_path / "missing") == ""
    assert tail(None) == ""
