"""A private Docker daemon (and private Podman storage) for the Docker tests.

Nothing here uses the machine's own dockerd or podman storage.  The daemon
gets its own data root, exec root, socket and pid file under a temporary
directory, and its own bridge with a NAT rule of ours, so it never touches
the iptables FORWARD policy (a dockerd that turns IP forwarding on itself may
set it to DROP and cut off LXC's bridge): it runs with ``--iptables=false``,
and we turn forwarding on before it starts.  Everything is undone on the way
out, failure and Ctrl-C included: the daemon is stopped by its PID, the
bridge and our rules removed.  Import the fixtures into a test module with
``from tests.integration.conftest_docker import dockerd, podman_env``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.conftest import require_root, require_tool, wait_until

FORWARD_SYSCTL = Path("/proc/sys/net/ipv4/ip_forward")


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True)


def _free_subnet() -> tuple[str, str]:
    """A /24 for the bridge that no route of the host uses yet."""
    routes = _run("ip", "-4", "route", "show", "table", "all").stdout
    for third in range(211, 250):
        prefix = f"172.29.{third}."
        if prefix not in routes:
            return f"{prefix}1/24", f"{prefix}0/24"
    raise RuntimeError("no free 172.29.x.0/24 subnet for the test bridge")


def _bridge_name() -> str:
    links = _run("ip", "-o", "link", "show").stdout
    for n in range(100):
        name = f"gitiand{n}"
        if f" {name}:" not in links and f" {name}@" not in links:
            return name
    raise RuntimeError("no free gitiandN bridge name")


@contextmanager
def bridge_with_nat() -> Iterator[str]:
    """A bridge with an address, NAT to the outside and FORWARD accepts; removed after."""
    name = _bridge_name()
    addr, net = _free_subnet()
    rules = [
        ("nat", ["POSTROUTING", "-s", net, "!", "-o", name, "-j", "MASQUERADE"]),
        ("filter", ["FORWARD", "-i", name, "-j", "ACCEPT"]),
        ("filter", ["FORWARD", "-o", name, "-j", "ACCEPT"]),
    ]
    added: list[tuple[str, list[str]]] = []
    _run("ip", "link", "add", name, "type", "bridge")
    try:
        _run("ip", "addr", "add", addr, "dev", name)
        _run("ip", "link", "set", name, "up")
        for table, rule in rules:
            _run("iptables", "-t", table, "-I", *rule)
            added.append((table, rule))
        yield name
    finally:
        for table, rule in reversed(added):
            _run("iptables", "-t", table, "-D", *rule, check=False)
        _run("ip", "link", "delete", name, check=False)


@contextmanager
def private_dockerd(root: Path) -> Iterator[dict[str, str]]:
    """Start a dockerd of our own; yield the environment that reaches it."""
    require_root()
    require_tool("dockerd", "docker", "iptables", "ip")
    sock = root / "docker.sock"
    pidfile = root / "docker.pid"
    with ExitStack() as stack:
        # Forwarding on first, so that dockerd finds it on and leaves the
        # FORWARD policy alone (and --iptables=false: it writes no rules).
        if FORWARD_SYSCTL.read_text().strip() != "1":
            FORWARD_SYSCTL.write_text("1\n")
        bridge = stack.enter_context(bridge_with_nat())
        logf = stack.enter_context(open(root / "dockerd.log", "wb"))
        argv = [
            "dockerd",
            "--data-root", os.fspath(root / "data"),
            "--exec-root", os.fspath(root / "exec"),
            "--pidfile", os.fspath(pidfile),
            "-H", f"unix://{sock}",
            "--storage-driver", "overlay2",
            "--bridge", bridge,
            "--iptables=false",
            "--ip-masq=false",
        ]  # fmt: skip
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        stack.callback(_stop, proc)
        env = {"DOCKER_HOST": f"unix://{sock}"}

        def answers() -> bool:
            if proc.poll() is not None:
                log = (root / "dockerd.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"dockerd exited:\n{log}")
            r = subprocess.run(
                ["docker", "version", "--format", "{{.Server.Version}}"],
                env={**os.environ, **env},
                capture_output=True,
            )
            return r.returncode == 0

        wait_until(answers, timeout=60, what="dockerd to answer", interval=0.3)
        yield env


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the daemon we started, by its handle (it stops its containerd)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def leftover_containers(env: dict[str, str], cli: str = "docker") -> list[str]:
    r = subprocess.run(
        [cli, "ps", "--all", "--quiet"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return r.stdout.split()


@pytest.fixture(scope="session")
def dockerd() -> Iterator[dict[str, str]]:
    """Environment (``DOCKER_HOST``) of a private dockerd, stopped after the session."""
    root = Path(tempfile.mkdtemp(prefix="gitian-dockerd."))
    saved = os.environ.get("DOCKER_HOST")
    try:
        with private_dockerd(root) as env:
            # The targets' docker commands inherit our environment: point them here.
            os.environ.update(env)
            yield env
            left = leftover_containers(env)
            assert not left, f"containers left behind: {left}"
    finally:
        if saved is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = saved
        # overlay2 layers may still be mounted if the daemon was killed.
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            mnt = line.split()[4]
            if mnt.startswith(os.fspath(root) + "/"):
                subprocess.run(["umount", "--lazy", mnt], check=False)
        shutil.rmtree(root, ignore_errors=True)


CNI_BRIDGE = "cni-podman0"


@pytest.fixture(scope="session")
def podman_env() -> Iterator[dict[str, str]]:
    """Environment for podman with storage of its own (``CONTAINERS_STORAGE_CONF``)."""
    require_root()
    require_tool("podman")
    root = Path(tempfile.mkdtemp(prefix="gitian-podman."))
    conf = root / "storage.conf"
    conf.write_text(
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{root / "graph"}"\n'
        f'runroot = "{root / "run"}"\n'
    )
    env = {"CONTAINERS_STORAGE_CONF": os.fspath(conf), "GITIAN_CONTAINER_CLI": "podman"}
    had_bridge = _run("ip", "link", "show", CNI_BRIDGE, check=False).returncode == 0
    had_chains = _run("iptables", "-S", "CNI-FORWARD", check=False).returncode == 0
    try:
        yield env
        left = leftover_containers(env, "podman")
        assert not left, f"containers left behind: {left}"
    finally:
        full = {**os.environ, **env}
        for argv in (["podman", "rm", "--all", "--force"], ["podman", "rmi", "--all", "--force"]):
            subprocess.run(argv, env=full, capture_output=True)
        if not had_bridge:
            _run("ip", "link", "delete", CNI_BRIDGE, check=False)
        if not had_chains:
            # The CNI firewall plugin leaves its (empty) chains and their jump.
            _run("iptables", "-D", "FORWARD", "-m", "comment", "--comment",
                 "CNI firewall plugin rules", "-j", "CNI-FORWARD", check=False)  # fmt: skip
            for chain in ("CNI-FORWARD", "CNI-ADMIN"):
                _run("iptables", "-F", chain, check=False)
                _run("iptables", "-X", chain, check=False)
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            mnt = line.split()[4]
            if mnt.startswith(os.fspath(root) + "/"):
                subprocess.run(["umount", "--lazy", mnt], check=False)
        shutil.rmtree(root, ignore_errors=True)
