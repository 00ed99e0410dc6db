"""SshTarget's command and copy streams against a local paramiko SSH server.

The server runs each command with the host's /bin/sh (real processes, real
tar), so the client's streaming, exit statuses and copies are exercised in
seconds without a VM.  Commands run as the test's own user: only ``root`` is
used as the target user, which needs no sudo.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from gitian.errors import CommandError, TargetError
from gitian.home import Home
from gitian.ssh import SshConfig, SshTarget
from gitian.targets.base import BaseOptions


class _Server(paramiko.ServerInterface):
    def __init__(self, key: paramiko.PKey) -> None:
        self.key = key
        self.command: bytes | None = None
        self.ready = threading.Event()

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == "root" and key.get_base64() == self.key.get_base64()
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.command = command
        self.ready.set()
        return True


def _pump(src: object, send: object) -> None:
    read = src.read1  # type: ignore[attr-defined]
    while True:
        data = read(65536)
        if not data:
            break
        send(data)  # type: ignore[operator]


def _serve_one(transport: paramiko.Transport, server: _Server) -> None:
    while transport.is_active():
        chan = transport.accept(timeout=5)
        if chan is None:
            return
        server.ready.wait(5)
        server.ready.clear()
        assert server.command is not None
        proc = subprocess.Popen(
            ["sh", "-c", server.command.decode()],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdin and proc.stdout and proc.stderr

        def feed(p: subprocess.Popen[bytes] = proc, c: paramiko.Channel = chan) -> None:
            assert p.stdin
            try:
                while True:
                    data = c.recv(65536)
                    if not data:
                        break
                    p.stdin.write(data)
            except (BrokenPipeError, OSError):
                pass
            finally:
                try:
                    p.stdin.close()
                except OSError:
                    pass

        threads = [
            threading.Thread(target=feed, daemon=True),
            threading.Thread(target=_pump, args=(proc.stdout, chan.sendall), daemon=True),
            threading.Thread(target=_pump, args=(proc.stderr, chan.sendall_stderr), daemon=True),
        ]
        for t in threads:
            t.start()
        threads[1].join()
        threads[2].join()
        chan.send_exit_status(proc.wait())
        chan.shutdown_write()
        chan.close()


class Local(SshTarget):
    name = "local-ssh"

    @classmethod
    def unavailable_reason(cls, *, for_base: bool = False, config: object = None) -> str | None:
        return None

    def make_base(self, options: BaseOptions) -> None: ...
    def has_base(self) -> bool:
        return True

    def reset(self) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None:
        self.close()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    home = Home(tmp_path_factory.mktemp("ssh") / "home")
    home.var.mkdir(parents=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", home.var / "id_rsa"], check=True
    )
    pub = paramiko.PKey.from_path(home.var / "id_rsa")
    host_key = paramiko.Ed25519Key.from_path(home.var / "id_rsa")
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    port = lsock.getsockname()[1]
    stop = threading.Event()

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            tr = paramiko.Transport(conn)
            tr.add_server_key(host_key)
            srv = _Server(pub)
            tr.start_server(server=srv)
            threading.Thread(target=_serve_one, args=(tr, srv), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    cfg = SshConfig(home=home, suite="s", arch="amd64", distro="debian", ssh_port=port)
    t = Local(cfg)
    try:
        t.wait_ready(10)
        yield t
    finally:
        t.close()
        stop.set()
        lsock.close()


def test_exit_status_and_streams(target: Local) -> None:
    r = target.run(["sh", "-c", "echo out; echo err >&2; exit 5"], user="root",
                   capture=True, check=False)  # fmt: skip
    assert (r.returncode, r.stdout, r.stderr) == (5, b"out\n", b"err\n")
    with pytest.raises(CommandError, match="exited 5") as e:
        target.run(["sh", "-c", "echo why >&2; exit 5"], user="root", capture=True)
    assert "why" in e.value.output


def test_stdin_is_streamed_both_ways(target: Local, tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * 1024)
    assert target.run(["cat"], user="root", stdin=data, capture=True).stdout == data
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    with open(src, "rb") as f:
        out = target.run(["sha256sum"], user="root", stdin=f, capture=True).stdout
    assert out.split()[0].decode() == hashlib.sha256(data).hexdigest()


def test_output_to_a_file_descriptor(target: Local, tmp_path: Path) -> None:
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        target.run(["printf", "%s", "to fd"], user="root", stdout=fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"to fd"


def test_command_that_ignores_its_input(target: Local) -> None:
    r = target.run(["true"], user="root", stdin=os.urandom(4 * 1024 * 1024), check=False)
    assert r.returncode == 0


def test_copies(target: Local, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"x" * 100_000)
    (src / "top").write_text("t")
    dest = tmp_path / "remote"
    target.copy_to(src, str(dest), user="root")
    assert (dest / "tree" / "d" / "f").read_bytes() == b"x" * 100_000
    back = tmp_path / "back"
    target.copy_from(str(dest / "tree"), back, user="root")
    assert (back / "tree" / "top").read_text() == "t"
    with pytest.raises(TargetError, match="copy-from-target failed"):
        target.copy_from(str(dest / "nope"), back, user="root")
    with pytest.raises(TargetError, match="does not exist"):
        target.copy_to(tmp_path / "nope", "x", user="root")


def test_one_connection_is_reused(target: Local) -> None:
    first = target.connect()
    target.run(["true"], user="root")
    target.run(["true"], user="root")
    assert target.connect() is first


def test_pipe_and_stdout_constants_behave_as_in_subprocess(target: Local) -> None:
    cmd = ["sh", "-c", "echo out; echo err >&2"]
    r = target.run(cmd, user="root", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert (r.stdout, r.stderr) == (b"out\n", b"err\n")
    r = target.run(cmd, user="root", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert sorted(r.stdout.splitlines()) == [b"err", b"out"]
    r = target.run(cmd, user="root", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert (r.stdout, r.stderr) == (b"out\n", b"")
