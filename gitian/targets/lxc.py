"""The LXC backend (``USE_LXC=1``), faithful to the classic one.

The base is the same directory base the bubblewrap backend uses; a clean
target is an overlay mount of it (the classic tool copied a whole image).
``start-target`` renders ``etc/lxc.config.in`` into ``var/lxc.config`` and
starts an application container (``lxc-execute -d``: LXC's own init as pid 1,
no systemd needed); commands enter it with ``lxc-attach``.  With
``LXC_EXECUTE`` set, as classic, nothing is started and every command is its
own ``lxc-execute``.

Network: ``LXC_BRIDGE`` (with ``LXC_GUEST_IP`` / ``GITIAN_HOST_IP``) as in the
classic tool.  Without it, LXC's own NAT bridge ``lxcbr0`` is brought up with
``lxc-net`` when it is not already there, and taken down again when the last
gitian target that needed it stops.  The container has the network, as in the
classic tool, but commands run without it (in a network namespace of their
own) unless the caller asks for network (the apt steps).
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import itertools
import os
import re
import string
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from gitian import log
from gitian.errors import TargetError
from gitian.home import etc
from gitian.run import is_root, require, run, which, write_atomic
from gitian.targets import rootfs
from gitian.targets.base import PATH, TargetConfig

LXC_NET = Path("/usr/libexec/lxc/lxc-net")
LXC_NET_DEFAULTS = (Path("/etc/default/lxc"), Path("/etc/default/lxc-net"))
# Host-wide bookkeeping of who needs lxcbr0 (several gitian homes may run at once).
RUN_DIR = Path("/run/gitian-lxc-net")
LXC_ARCH = {"amd64": "x86_64", "i386": "i686"}
_counter = itertools.count()


def container_name(home_root: Path) -> str:
    """Unique per gitian home, so several homes can build at once."""
    return "gitian-" + hashlib.sha256(os.fsencode(home_root)).hexdigest()[:10]


@dataclass(frozen=True)
class Net:
    bridge: str
    address: str  # the guest's, with prefix length
    gateway: str
    managed: bool  # lxcbr0 from lxc-net, which we bring up if needed


def lxc_net_settings(files: tuple[Path, ...] = LXC_NET_DEFAULTS) -> dict[str, str]:
    """lxc-net's settings: its defaults, overridden by /etc/default/lxc{,-net}."""
    s = {"LXC_BRIDGE": "lxcbr0", "LXC_ADDR": "10.0.3.1", "LXC_NETMASK": "255.255.255.0"}
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            m = re.match(r'\s*(LXC_BRIDGE|LXC_ADDR|LXC_NETMASK)=["\']?([^"\'\s#]*)', line)
            if m:
                s[m.group(1)] = m.group(2)
    return s


def bridge_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


class LxcNetUsers:
    """Bring up lxcbr0 only when it is missing; stop it only if we started it
    and no other gitian container still uses it.  State is in /run, under a lock."""

    def __init__(self, bridge: str, run_dir: Path = RUN_DIR) -> None:
        self.bridge = bridge
        self.dir = run_dir

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "users").mkdir(exist_ok=True)
        with open(self.dir / "lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _prune(self) -> None:
        """Forget users that are gone: a target whose overlay is no longer
        mounted, or a process (a test session) that no longer runs."""
        for f in (self.dir / "users").iterdir():
            try:
                kind, _, what = f.read_text().strip().partition(" ")
            except OSError:
                continue
            if kind == "mount" and not rootfs.is_mounted(Path(what)):
                f.unlink(missing_ok=True)
            elif kind == "pid" and what.isdigit() and not Path("/proc", what).exists():
                f.unlink(missing_ok=True)

    def acquire(self, user: str, *, mount: Path | None = None) -> None:
        """Register ``user``; it holds the bridge while ``mount`` (its target)
        stays mounted, or else while this process lives."""
        with self._locked():
            self._prune()
            if not bridge_exists(self.bridge):
                require("dnsmasq", "iptables", why="for LXC's NAT bridge (lxc-net)")
                log.info(
                    f"no LXC_BRIDGE set: bringing up LXC's NAT bridge {self.bridge} "
                    f"({LXC_NET} start); it is stopped again after the build"
                )
                run([os.fspath(LXC_NET), "start"], capture=True)
                if not bridge_exists(self.bridge):
                    raise TargetError(f"{LXC_NET} start did not bring up {self.bridge}")
                (self.dir / "started").write_text(self.bridge + "\n")
            holder = f"mount {mount}" if mount is not None else f"pid {os.getpid()}"
            (self.dir / "users" / user).write_text(holder + "\n")

    def release(self, user: str) -> None:
        if not self.dir.is_dir():
            return
        with self._locked():
            (self.dir / "users" / user).unlink(missing_ok=True)
            self._prune()
            if any((self.dir / "users").iterdir()):
                return
            started = self.dir / "started"
            if started.exists():
                log.info(f"stopping LXC's NAT bridge {self.bridge} ({LXC_NET} stop)")
                run([os.fspath(LXC_NET), "stop"], check=False, capture=True)
                started.unlink()


@dataclass(frozen=True)
class LxcConfig(TargetConfig):
    """The LXC backend's own settings, as the classic variables name them."""

    lxc_bridge: str | None = None  # LXC_BRIDGE (None: bring up LXC's own NAT bridge)
    lxc_guest_ip: str = "10.0.2.5"  # LXC_GUEST_IP
    host_ip: str = "10.0.2.2"  # GITIAN_HOST_IP
    lxc_execute: bool = False  # LXC_EXECUTE: every command its own lxc-execute


class LxcTarget(rootfs.OverlayTarget):
    name = "lxc"
    config_type: ClassVar[type[TargetConfig]] = LxcConfig
    config: LxcConfig

    @classmethod
    def unavailable_reason(
        cls, *, for_base: bool = False, config: TargetConfig | None = None
    ) -> str | None:
        for prog in ("lxc-execute", "lxc-attach", "lxc-stop", "lxc-info", "lxc-wait"):
            if which(prog) is None:
                return f"{prog} is missing (apt-get install lxc)"
        if which("setpriv") is None:
            return "setpriv is missing (apt-get install util-linux)"
        if not is_root():
            return "the lxc backend runs privileged containers and needs root (run as root)"
        if not LXC_NET.exists():
            return f"{LXC_NET} is missing (apt-get install lxc)"
        if for_base:
            return rootfs.missing_for_base_host()
        return rootfs.missing_for_targets()

    # -- names and files ---------------------------------------------------
    @property
    def container(self) -> str:
        return container_name(self.config.home.root)

    @property
    def lxcpath(self) -> Path:
        return self.config.home.var / "lxc"

    @property
    def config_file(self) -> Path:
        return self.config.home.var / "lxc.config"

    @property
    def log_file(self) -> Path:
        return self.config.home.var / "lxc.log"

    def net(self) -> Net:
        c = self.config
        if c.lxc_bridge:
            return Net(c.lxc_bridge, f"{c.lxc_guest_ip}/24", c.host_ip, managed=False)
        s = lxc_net_settings()
        iface = ipaddress.IPv4Interface(f"{s['LXC_ADDR']}/{s['LXC_NETMASK']}")
        hosts = list(iface.network.hosts())
        # A fixed address per home, from the top of the range (dnsmasq's DHCP
        # hands out from the bottom); no DHCP client is needed in the base.
        h = int(self.container.rpartition("-")[2], 16)
        guest = hosts[-2 - h % min(50, max(1, len(hosts) - 2))]
        return Net(
            s["LXC_BRIDGE"], f"{guest}/{iface.network.prefixlen}", str(iface.ip), managed=True
        )

    def render_config(self, net: Net) -> str:
        template = string.Template((etc() / "lxc.config.in").read_text())
        network = "\n".join(
            [
                "lxc.net.0.type = veth",
                f"lxc.net.0.link = {net.bridge}",
                "lxc.net.0.flags = up",
                f"lxc.net.0.ipv4.address = {net.address}",
                f"lxc.net.0.ipv4.gateway = {net.gateway}",
            ]
        )
        return template.substitute(
            arch=LXC_ARCH.get(self.config.image_arch, self.config.image_arch),
            rootfs=os.fspath(self.rootfs),
            path=PATH,
            package_cache=os.fspath(self.config.home.package_cache),
            network=network,
        )

    # -- lifecycle ---------------------------------------------------------
    def _start(self) -> None:
        net = self.net()
        if net.managed:
            LxcNetUsers(net.bridge).acquire(self.container, mount=self.rootfs)
        elif not bridge_exists(net.bridge):
            raise TargetError(
                f"LXC_BRIDGE={net.bridge} does not exist on this host",
                hint="create that bridge, or unset LXC_BRIDGE to use LXC's own NAT bridge",
            )
        self._write_resolv(net)
        self.lxcpath.mkdir(parents=True, exist_ok=True)
        write_atomic(self.config_file, self.render_config(net).encode())
        if self.config.lxc_execute:
            return  # classic LXC_EXECUTE: every command is its own lxc-execute
        if self._state() == "RUNNING":
            return
        with log.step(f"Starting LXC container {self.container}"):
            run(
                [
                    "lxc-execute", "-d", *self._names(),
                    "-f", os.fspath(self.config_file),
                    "-o", os.fspath(self.log_file), "-l", "INFO",
                    "--", "/bin/sleep", "infinity",
                ],  # fmt: skip
            )
            self._wait_state("RUNNING")

    def _names(self) -> list[str]:
        """The container's name and LXC path, as every lxc-* command takes them."""
        return ["-n", self.container, "-P", os.fspath(self.lxcpath)]

    def _wait_state(self, state: str) -> None:
        run(["lxc-wait", *self._names(), "-s", state, "-t", "20"])

    def _write_resolv(self, net: Net) -> None:
        # A host resolver on loopback is not reachable from the container; the
        # dnsmasq of LXC's NAT bridge is.
        host = Path("/etc/resolv.conf")
        try:
            text = host.read_text()
        except OSError:
            text = ""
        servers = re.findall(r"^\s*nameserver\s+(\S+)", text, re.M)
        if not servers or all(s.startswith("127.") or s == "::1" for s in servers):
            if not net.managed:
                return
            text = f"nameserver {net.gateway}\n"
        dest = self.rootfs / "etc/resolv.conf"
        if dest.is_symlink():
            dest.unlink()
        dest.write_text(text)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            res = self.run(["true"], user="root", check=False, capture=True)
            if res.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise TargetError(
                    f"the LXC container {self.container} did not become ready",
                    hint=f"see {self.log_file}",
                )
            time.sleep(0.2)

    def _state(self) -> str:
        res = run(
            ["lxc-info", *self._names(), "-s", "-H"],
            check=False,
            capture=True,
        )
        return (res.stdout or b"").decode().strip() if res.returncode == 0 else "STOPPED"

    def _stop(self) -> None:
        if self.lxcpath.is_dir() and self._state() not in ("STOPPED", ""):
            with log.step(f"Stopping LXC container {self.container}"):
                # Nothing in a build target needs a clean shutdown.
                run(["lxc-stop", "-k", *self._names()], check=False, capture=True)
                self._wait_state("STOPPED")
        if not self.config.lxc_bridge:
            LxcNetUsers(self.net().bridge).release(self.container)

    # -- commands ----------------------------------------------------------
    def prefix(
        self, *, user: str, env: Mapping[str, str], home: str, network: bool, interactive: bool
    ) -> list[str]:
        if self.config.lxc_execute:
            name = f"{self.container}-x{os.getpid()}-{next(_counter)}"
            cmd = [
                "lxc-execute",
                "-n", name,
                "-P", os.fspath(self.lxcpath),
                "-f", os.fspath(self.config_file),
                "-o", os.fspath(self.log_file),
                "--",
            ]  # fmt: skip
        else:
            if self._state() != "RUNNING":
                raise TargetError(
                    f"the LXC container {self.container} is not running",
                    hint="run start-target first",
                )
            cmd = ["lxc-attach", *self._names(), "--clear-env", "--"]
        cmd += ["/usr/bin/env", "-i", "-C", home, *(f"{k}={v}" for k, v in env.items())]
        if not network:
            cmd += ["unshare", "--net", "--"]
        cmd += rootfs.drop_privileges(user)
        return cmd
