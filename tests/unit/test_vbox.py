"""The VirtualBox backend against stand-in ``VBoxManage`` and ``vagrant`` programs.

VirtualBox cannot run on this machine (it is not in Debian), so the two
programs are replaced by small scripts that append their argv (and for
vagrant, the values it is given) to a log and keep a VM's state in a JSON
file.  The tests check the exact command sequences of make-base-vm --vbox,
make-clean-vm, start-target and stop-target through the real CLI, and that
on-target and the copies go over real SSH (paramiko against an in-process
paramiko server) to 127.0.0.1 on the configured port as root with var/id_rsa.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from paramiko.common import (
    AUTH_FAILED,
    AUTH_SUCCESSFUL,
    OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
    OPEN_SUCCEEDED,
)

from gitian.errors import TargetError, UsageError
from gitian.home import Home
from gitian.targets import config_from_env, make_target
from gitian.targets.base import BaseOptions
from gitian.targets.vbox import (
    VAGRANTFILE,
    VBoxConfig,
    VBoxTarget,
    default_box,
    parse_machinereadable,
    vm_name,
)

VM = "Gitian-bookworm-amd64"

VBOXMANAGE = r'''
import json, os, sys
log, statef = os.environ["STANDIN_LOG"], os.environ["STANDIN_STATE"]
with open(log, "a") as f:
    f.write(json.dumps(["VBoxManage", *sys.argv[1:]]) + "\n")
try:
    with open(statef) as f:
        vms = json.load(f)
except FileNotFoundError:
    vms = {}
a = sys.argv[1:]
def save():
    with open(statef, "w") as f:
        json.dump(vms, f)
def vm(name):
    if name not in vms:
        sys.stderr.write(f"VBoxManage: error: Could not find a registered machine named '{name}'\n")
        sys.exit(1)
    return vms[name]
if a[0] == "showvminfo":
    v = vm(a[1])
    print(f'name="{a[1]}"\nVMState="{v["state"]}"\nmemory=2000')
elif a[0] == "snapshot" and a[2] == "take":
    vm(a[1])["snapshots"].append(a[3]); save()
elif a[0] == "snapshot" and a[2] == "restore":
    v = vm(a[1])
    if a[3] not in v["snapshots"] or v["state"] == "running":
        sys.exit(1)
    v["state"] = "poweroff"; save()
elif a[0] == "startvm":
    vm(a[1])["state"] = "running"; save()
elif a[0] == "controlvm":
    v = vm(a[1])
    if v["state"] != "running":
        sys.exit(1)
    v["state"] = {"savestate": "saved", "poweroff": "poweroff"}[a[2]]; save()
else:
    sys.exit(2)
'''

VAGRANT = r'''
import json, os, sys
log, statef = os.environ["STANDIN_LOG"], os.environ["STANDIN_STATE"]
keys = ["GITIAN_VAGRANT_BOX", "GITIAN_VM_NAME", "GITIAN_VM_MEMORY", "GITIAN_VM_CPUS",
        "GITIAN_SSH_PORT", "GITIAN_USER", "GITIAN_SUITE", "GITIAN_PACKAGES", "VAGRANT_CWD"]
with open(log, "a") as f:
    f.write(json.dumps(["vagrant", *sys.argv[1:]]) + "\n")
    f.write(json.dumps({"cwd": os.getcwd(), **{k: os.environ.get(k) for k in keys}}) + "\n")
if not os.path.isfile("Vagrantfile"):
    sys.exit(3)
try:
    with open(statef) as f:
        vms = json.load(f)
except FileNotFoundError:
    vms = {}
name = os.environ["GITIAN_VM_NAME"]
if sys.argv[1] == "up":
    vms[name] = {"state": "running", "snapshots": []}
elif sys.argv[1] == "halt":
    vms[name]["state"] = "poweroff"
with open(statef, "w") as f:
    json.dump(vms, f)
'''


@pytest.fixture
def standins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bin directory with recording VBoxManage and vagrant, first on PATH; returns the log."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, body in (("VBoxManage", VBOXMANAGE), ("vagrant", VAGRANT)):
        prog = bindir / name
        prog.write_text(f"#!{sys.executable}\n{body}")
        prog.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("STANDIN_LOG", str(log))
    monkeypatch.setenv("STANDIN_STATE", str(tmp_path / "vms.json"))
    for var in ("USE_LXC", "USE_DOCKER", "USE_BWRAP", "VM_SSH_PORT", "GITIAN_VAGRANT_BOX"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("USE_VBOX", "1")
    monkeypatch.setenv("DISTRO", "debian")
    return log


def calls(log: Path, *, clear: bool = True) -> list[Any]:
    out = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    if clear:
        log.unlink(missing_ok=True)
    return out


def argvs(log: Path) -> list[list[str]]:
    return [c for c in calls(log) if isinstance(c, list)]


def tool(home: Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", f"from gitian.cli.targettools import {name}; {name}()", *args],
        capture_output=True, text=True, cwd=home, check=False,
    )  # fmt: skip


def info(vm: str = VM) -> list[str]:
    return ["VBoxManage", "showvminfo", vm, "--machinereadable"]


def test_names_and_parsing() -> None:
    assert vm_name("bookworm", "amd64") == VM
    assert default_box("debian", "bookworm", "amd64") == "debian/bookworm64"
    assert default_box("ubuntu", "bionic", "i386") == "ubuntu/bionic32"
    got = parse_machinereadable('name="x y"\nVMState="saved"\nmemory=2000\n"SATA-0-0"="a.vdi"\n')
    assert got == {"name": "x y", "VMState": "saved", "memory": "2000", "SATA-0-0": "a.vdi"}


def test_make_base_vm_sequence(standins: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    r = tool(home, "make_base_vm", "--vbox", "--distro", "debian", "--suite", "bookworm")
    assert r.returncode == 0, r.stderr
    work = home / "var" / "vagrant" / "bookworm-amd64"
    log = calls(standins)
    assert [c for c in log if isinstance(c, list)] == [
        info(),
        ["vagrant", "up", "--provider=virtualbox"],
        ["vagrant", "halt"],
        ["VBoxManage", "snapshot", VM, "take", "Gitian-Clean"],
    ]
    given = [c for c in log if isinstance(c, dict)]
    assert len(given) == 2
    up = given[0]
    assert up["cwd"] == str(work) and up["VAGRANT_CWD"] == str(work)
    assert up["GITIAN_VM_NAME"] == VM
    assert up["GITIAN_VAGRANT_BOX"] == "debian/bookworm64"
    assert up["GITIAN_SSH_PORT"] == "2223"
    assert (up["GITIAN_VM_MEMORY"], up["GITIAN_VM_CPUS"]) == ("2000", "2")
    assert up["GITIAN_USER"] == "debian" and up["GITIAN_SUITE"] == "bookworm"
    assert {"build-essential", "sudo", "openssh-server", "locales-all"} <= set(
        up["GITIAN_PACKAGES"].split()
    )
    # The Vagrantfile is the constant one: values only through the environment.
    assert (work / "Vagrantfile").read_text() == VAGRANTFILE
    assert (work / "id_rsa.pub").read_bytes() == (home / "var" / "id_rsa.pub").read_bytes()
    for script in ("provision.sh", "bootstrap-fixup", "upgrade-system.sh"):
        assert (work / script).is_file()

    # A second make-base-vm refuses to overwrite the VM, before running anything else.
    r = tool(home, "make_base_vm", "--vbox", "--distro", "debian", "--suite", "bookworm")
    assert r.returncode == 2 and "already exists" in r.stderr
    assert argvs(standins) == [info()]


def test_vagrant_box_and_port_from_the_environment(
    standins: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITIAN_VAGRANT_BOX", "my/box")
    monkeypatch.setenv("VM_SSH_PORT", "2299")
    r = tool(tmp_path, "make_base_vm", "--vbox", "--distro", "debian", "--suite", "bookworm")
    assert r.returncode == 0, r.stderr
    up = [c for c in calls(standins) if isinstance(c, dict)][0]
    assert (up["GITIAN_VAGRANT_BOX"], up["GITIAN_SSH_PORT"]) == ("my/box", "2299")


@pytest.mark.parametrize(
    ("opts", "box"),
    [
        ({"distro": "Debian!"}, "b/x"),
        ({"suite": "book worm"}, "b/x"),
        ({"arch": "arm64"}, "b/x"),
        ({}, "box; rm -rf /"),
        ({"extra_packages": ("ok", "no way")}, "b/x"),
    ],
)
def test_bad_values_are_refused_before_anything_runs(
    standins: Path, tmp_path: Path, opts: dict[str, Any], box: str
) -> None:
    t = _target(tmp_path, vagrant_box=box)
    options = BaseOptions(**{"distro": "debian", "suite": "bookworm", **opts})
    with pytest.raises(UsageError):
        t.make_base(options)
    assert argvs(standins) == []


def _make_vm(standins: Path, home: Path) -> None:
    r = tool(home, "make_base_vm", "--vbox", "--distro", "debian", "--suite", "bookworm")
    assert r.returncode == 0, r.stderr
    calls(standins)


def test_clean_start_stop_sequences(standins: Path, tmp_path: Path) -> None:
    _make_vm(standins, tmp_path)

    r = tool(tmp_path, "make_clean_vm", "--suite", "bookworm", "--arch", "amd64")
    assert r.returncode == 0, r.stderr
    assert argvs(standins) == [info(), ["VBoxManage", "snapshot", VM, "restore", "Gitian-Clean"]]

    r = tool(tmp_path, "start_target", "64", "bookworm-amd64")
    assert r.returncode == 0, r.stderr
    assert argvs(standins) == [info(), ["VBoxManage", "startvm", VM, "--type", "headless"]]

    r = tool(tmp_path, "stop_target")
    assert r.returncode == 0, r.stderr
    assert argvs(standins) == [info(), ["VBoxManage", "controlvm", VM, "savestate"]]

    # Stopping again does nothing but look.
    r = tool(tmp_path, "start_target", "64", "bookworm-amd64")
    calls(standins)
    _target(tmp_path).stop()
    _target(tmp_path).stop()
    assert argvs(standins) == [info(), ["VBoxManage", "controlvm", VM, "savestate"], info()]


def test_clean_target_of_a_running_vm_powers_it_off_first(standins: Path, tmp_path: Path) -> None:
    _make_vm(standins, tmp_path)
    t = _target(tmp_path)
    t.start()
    calls(standins)
    t.reset()
    assert argvs(standins) == [
        info(),
        ["VBoxManage", "controlvm", VM, "poweroff"],
        ["VBoxManage", "snapshot", VM, "restore", "Gitian-Clean"],
    ]


def test_missing_vm_says_how_to_make_it(standins: Path, tmp_path: Path) -> None:
    with pytest.raises(TargetError) as e:
        _target(tmp_path).reset()
    assert "no VirtualBox VM Gitian-bookworm-amd64" in str(e.value)
    assert e.value.hint and "make-base-vm --vbox --distro debian --suite bookworm" in e.value.hint
    with pytest.raises(TargetError):
        _target(tmp_path).start()
    assert argvs(standins) == [info(), info()]


def test_unavailable_without_vboxmanage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    reason = VBoxTarget.unavailable_reason()
    assert reason and "VBoxManage is not installed" in reason and "untested" in reason


def test_vagrant_is_needed_for_a_base(
    standins: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (standins.parent / "bin" / "vagrant").unlink()
    assert VBoxTarget.unavailable_reason() is None
    assert "vagrant is not installed" in (VBoxTarget.unavailable_reason(for_base=True) or "")


def _target(home: Path, **kw: Any) -> VBoxTarget:
    cfg = VBoxConfig(home=Home(home), suite="bookworm", arch="amd64", distro="debian", **kw)
    t = make_target("vbox", cfg)
    assert isinstance(t, VBoxTarget)
    return t


def test_ssh_parameters(tmp_path: Path) -> None:
    t = _target(tmp_path)
    assert (t.ssh_host, t.ssh_port(), t.ssh_login) == ("127.0.0.1", 2223, "root")
    assert t.ssh_key_path() == tmp_path / "var" / "id_rsa"
    cfg = config_from_env(Home(tmp_path), backend="vbox", suite="bookworm", arch="amd64",
                          env={"USE_VBOX": "1", "VM_SSH_PORT": "2299"})  # fmt: skip
    assert make_target("vbox", cfg).ssh_port() == 2299  # type: ignore[attr-defined]


# -- on-target and copies over real SSH -----------------------------------------


class _Server(paramiko.ServerInterface):
    """Accepts root with one key; exec requests run locally with sh -c."""

    def __init__(self, key: paramiko.PKey, seen: list[str]) -> None:
        self.key = key
        self.seen = seen
        self.command: bytes | None = None
        self.event = threading.Event()

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == "root" and key.get_base64() == self.key.get_base64()
        self.seen.append(f"auth {username} {'ok' if ok else 'refused'}")
        return AUTH_SUCCESSFUL if ok else AUTH_FAILED

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return OPEN_SUCCEEDED if kind == "session" else OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.seen.append(command.decode())
        threading.Thread(target=_serve_exec, args=(channel, command), daemon=True).start()
        return True


def _serve_exec(chan: paramiko.Channel, command: bytes) -> None:
    proc = subprocess.Popen(["sh", "-c", command.decode()], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdin and proc.stdout and proc.stderr

    def feed() -> None:
        assert proc.stdin
        while True:
            data = chan.recv(65536)
            if not data:
                break
            proc.stdin.write(data)
        proc.stdin.close()

    def drain(src: Any, send: Any) -> None:
        for chunk in iter(lambda: src.read1(65536), b""):
            send(chunk)

    threads = [threading.Thread(target=feed, daemon=True),
               threading.Thread(target=drain, args=(proc.stdout, chan.sendall)),
               threading.Thread(target=drain, args=(proc.stderr, chan.sendall_stderr))]  # fmt: skip
    for th in threads:
        th.start()
    for th in threads[1:]:
        th.join()
    chan.send_exit_status(proc.wait())
    chan.close()


@pytest.fixture
def ssh_server(tmp_path: Path) -> Iterator[tuple[int, Path, list[str]]]:
    """A real SSH server on 127.0.0.1 (a free port) that lets var/id_rsa in as root."""
    home = tmp_path / "sshhome"
    (home / "var").mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(home / "var" / "id_rsa")], check=True)  # fmt: skip
    client_key = paramiko.Ed25519Key.from_private_key_file(str(home / "var" / "id_rsa"))
    host_key = paramiko.ECDSAKey.generate()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(5)
    sock.settimeout(0.2)
    port = sock.getsockname()[1]
    seen: list[str] = []
    stop = threading.Event()
    transports: list[paramiko.Transport] = []

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            tr = paramiko.Transport(conn)
            tr.add_server_key(host_key)
            tr.start_server(server=_Server(client_key, seen))
            transports.append(tr)

    th = threading.Thread(target=loop, daemon=True)
    th.start()
    try:
        yield port, home, seen
    finally:
        stop.set()
        th.join()
        sock.close()
        for tr in transports:
            tr.close()


def test_on_target_and_copies_go_over_ssh(
    standins: Path, ssh_server: tuple[int, Path, list[str]], tmp_path: Path
) -> None:
    port, home, seen = ssh_server
    # The VM "runs" (wait_ready asks VBoxManage between attempts).
    (standins.parent / "vms.json").write_text(json.dumps({VM: {"state": "running",
                                                                "snapshots": []}}))
    t = _target(home, ssh_port=port)
    try:
        t.wait_ready(timeout=20)
        r = t.run(["sh", "-c", 'echo "$FOO" "$HOME"; cat; exit 7'], user="root",
                  env={"FOO": "a b"}, stdin=b"in\n", capture=True, check=False)  # fmt: skip
        assert (r.returncode, r.stdout) == (7, b"a b /root\nin\n")
        # Other users go through sudo on the guest (from the one root login).
        assert "sudo -u debian --" in _remote_line(t, ["true"], user="debian")
        src = tmp_path / "tree"
        (src / "sub").mkdir(parents=True)
        (src / "sub" / "f").write_bytes(b"data\n")
        dest = tmp_path / "remote-dest"
        t.copy_to(src, str(dest), user="root")
        assert (dest / "tree" / "sub" / "f").read_bytes() == b"data\n"
        t.copy_from(str(dest / "tree"), tmp_path / "back", user="root")
        assert (tmp_path / "back" / "tree" / "sub" / "f").read_bytes() == b"data\n"
    finally:
        t.close()
    assert seen[0] == "auth root ok"
    assert any("echo" in s for s in seen)


def _remote_line(t: VBoxTarget, argv: list[str], *, user: str) -> str:
    from gitian.ssh import remote_command

    line = remote_command(argv, user=user, env=t.user_env(user))
    assert shlex.split(line)[:4] == ["sudo", "-u", user, "--"]
    return line
