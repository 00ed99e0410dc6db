# ruff: noqa: F811
"""gbuild under faults (issue 6, item 3), on a real bubblewrap target.

SIGINT and SIGTERM at each phase (fetching the remote, starting the target,
installing packages, running the build script, copying results back), the
target's processes killed mid-build, and the disk filling while results or
caches are copied back.  Each must give a clear error and a nonzero exit,
stop everything it started (no mount below the gitian home, no process of
the build left), write no result, and leave the previous result file, the
caches and ``sigs/`` exactly as they were.

The phases are found by watching gbuild's own progress lines
(``GITIAN_DEBUG=1`` prints "<step> ..." when a step starts).  A fast phase
may be over before the signal lands; the guarantees hold whenever it lands.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitian.home import Home
from gitian.run import remove_tree
from tests.conftest import wait_until
from tests.integration.conftest import (  # noqa: F401 - fixtures
    BaseHome,
    base_home,
    lxc_net,
    mounts_under,
    shared_base,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "descriptors" / "example.yml"
NAME = "gitian-example"


def prepare(home: Home) -> None:
    subprocess.run(
        [sys.executable, os.fspath(ROOT / "descriptors" / "prepare-example"),
         os.fspath(home.root)],
        check=True,
        capture_output=True,
    )


def descriptor(tmp: Path, script: str, *, cache: bool = True) -> Path:
    head = EXAMPLE.read_text().split("script: |")[0]
    if cache:
        head += "enable_cache: true\n"
    p = tmp / "faulty.yml"
    p.write_text(head + "script: |\n" + "".join(f"  {ln}\n" for ln in script.splitlines()))
    return p


def seed(home: Home) -> dict[str, bytes]:
    """Previous result, caches and signatures; returns their snapshot."""
    files = {
        f"result/{NAME}-res.yml": b"previous result\n",
        f"cache/{NAME}/keep.bin": b"package cache\n",
        "cache/common/keep.bin": b"common cache\n",
        f"sigs/{NAME}/v1/alice/{NAME}-build.assert": b"previous assert\n",
        f"sigs/{NAME}/v1/alice/{NAME}-build.assert.sig": b"previous sig\n",
    }
    for rel, data in files.items():
        p = home.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return snapshot(home)


def snapshot(home: Home) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for top in ("result", "cache", "sigs"):
        base = home.root / top
        for dirpath, _, names in os.walk(base):
            for n in names:
                p = Path(dirpath, n)
                out[os.fspath(p.relative_to(home.root))] = (
                    b"->" + os.readlink(p).encode() if p.is_symlink() else p.read_bytes()
                )
    return out


def copying_back(home: Home) -> None:
    """Wait until the results are on their way back: the copy has written
    into build/out (the 1 GB file takes a while more)."""
    wait_until(
        lambda: (home.build / "out" / "big").exists(), timeout=60, what="the copy back to start"
    )


def processes_mentioning(*needles: str) -> list[str]:
    found = []
    me = os.getpid()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            cmd = Path("/proc", pid, "cmdline").read_bytes()
        except OSError:
            continue
        if any(n.encode() in cmd for n in needles):
            shown = cmd.replace(b"\0", b" ")[:200]
            found.append(f"{pid}: {shown!r}")
    return found


class Gbuild:
    """gbuild as a subprocess, its stderr watched line by line."""

    def __init__(self, home: Home, desc: Path, backend: str = "bwrap") -> None:
        env = {**os.environ, "GITIAN_DEBUG": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, os.fspath(ROOT / "bin" / "gbuild"), "--backend", backend,
             "--workdir", os.fspath(home.root), os.fspath(desc)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.lines: list[str] = []
        self._cv = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._cv:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def wait_for(self, started: str, timeout: float = 600) -> None:
        """Block until a progress line starting with ``started`` appears."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while not any(ln.strip().startswith(started) for ln in self.lines):
                if self.proc.poll() is not None and not self._reader.is_alive():
                    pytest.fail(f"gbuild ended before {started!r}:\n" + "\n".join(self.lines))
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"never reached {started!r}:\n" + "\n".join(self.lines[-30:]))
                self._cv.wait(timeout=min(left, 1.0))

    def finish(self, timeout: float = 600) -> tuple[int, str]:
        try:
            self.proc.wait(timeout=timeout)  # stderr belongs to the reader thread
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=10)
        return self.proc.returncode, "\n".join(self.lines)


def assert_clean(home: Home, before: dict[str, bytes], marker: str, err: str) -> None:
    assert "Traceback" not in err, err
    assert snapshot(home) == before, "result, caches or sigs changed"
    # (a home on its own tmpfs is itself a mount point: only what is below counts)
    below = [m for m in mounts_under(home.root) if m != os.fspath(home.root)]
    assert below == [], below
    # gbuild has exited; a process it killed may still be on its way out
    wait_until(
        lambda: not processes_mentioning(marker, os.fspath(home.root) + "/"),
        timeout=10,
        what="no process of the build left running",
    )


@pytest.fixture
def home(base_home: BaseHome) -> Iterator[Home]:
    h = base_home("bwrap")
    prepare(h)
    yield h
    remove_tree(h.build)  # up to 1 GB of copied-back output


SLOW_BUILD = """\
echo build-started
exec -a {marker} sleep 600
"""
SLOW_COPY = """\
mkdir -p "$OUTDIR"
echo small > "$OUTDIR/small"
truncate -s 1G "$OUTDIR/big"   # sparse on the target, 1 GB once copied back
"""

PHASES = [
    ("Fetching hello", SLOW_BUILD),
    ("Starting target", SLOW_BUILD),
    ("Updating apt-get", SLOW_BUILD),
    ("Running build script", SLOW_BUILD),
    ("Grabbing results from target", SLOW_COPY),
    ("Generating report", SLOW_COPY),  # hashing 1 GB, then writing the result
]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize(("phase", "script"), PHASES, ids=[p for p, _ in PHASES])
def test_signal_at_each_phase(
    home: Home, tmp_path: Path, phase: str, script: str, signum: int
) -> None:
    before = seed(home)
    marker = f"gitian-fault-{uuid.uuid4().hex[:12]}"
    g = Gbuild(home, descriptor(tmp_path, script.format(marker=marker)))
    g.wait_for(phase)
    if phase == "Running build script":
        wait_until(lambda: processes_mentioning(marker), timeout=120, what="the build script")
    elif phase == "Grabbing results from target":
        copying_back(home)
    g.proc.send_signal(signum)
    code, err = g.finish()
    assert code == (130 if signum == signal.SIGINT else 143), err
    words = "interrupted" if signum == signal.SIGINT else "SIGTERM"
    assert any(words in ln and ln.startswith("gbuild:") for ln in err.splitlines()), err
    assert_clean(home, before, marker, err)


@pytest.mark.parametrize(
    ("phase", "script", "signum"),
    [
        ("Starting target", SLOW_BUILD, signal.SIGTERM),
        ("Updating apt-get", SLOW_BUILD, signal.SIGINT),
        ("Grabbing results from target", SLOW_COPY, signal.SIGTERM),
    ],
    ids=["start-SIGTERM", "apt-SIGINT", "copy-back-SIGTERM"],
)
def test_signal_on_lxc(
    base_home: BaseHome,
    lxc_net: str,
    tmp_path: Path,
    phase: str,
    script: str,
    signum: int,
) -> None:
    """The same on LXC, where the container outlives a killed gbuild unless stopped."""
    home = base_home("lxc")
    prepare(home)
    before = seed(home)
    marker = f"gitian-fault-{uuid.uuid4().hex[:12]}"
    g = Gbuild(home, descriptor(tmp_path, script.format(marker=marker)), backend="lxc")
    g.wait_for(phase)
    if phase == "Grabbing results from target":
        copying_back(home)
    g.proc.send_signal(signum)
    code, err = g.finish()
    assert code == (130 if signum == signal.SIGINT else 143), err
    try:
        assert_clean(home, before, marker, err)
        assert _lxc_init_pids(home) == []
    finally:
        remove_tree(home.build)


def _bwrap_ancestors(pid: int) -> list[int]:
    out = []
    while pid > 1:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            break
        fields = dict(ln.split(":\t", 1) for ln in status.splitlines() if ":\t" in ln)
        if fields.get("Name", "").strip() == "bwrap":
            out.append(pid)
        pid = int(fields.get("PPid", "0").strip() or 0)
    return out


def _lxc_init_pids(home: Home) -> list[int]:
    lxcpath = os.fspath(home.var / "lxc")
    names = subprocess.run(
        ["lxc-ls", "-P", lxcpath, "--active"], capture_output=True, text=True
    ).stdout.split()
    pids = []
    for n in names:
        out = subprocess.run(
            ["lxc-info", "-P", lxcpath, "-n", n, "-p", "-H"], capture_output=True, text=True
        ).stdout.strip()
        if out.isdigit():
            pids.append(int(out))
    return pids


@pytest.mark.parametrize("backend", ["bwrap", "lxc"])
def test_target_killed_mid_build(
    base_home: BaseHome, request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """The target dies under the build: bwrap's sandbox or LXC's container init
    is SIGKILLed while the script runs."""
    if backend == "lxc":
        request.getfixturevalue("lxc_net")
    home = base_home(backend)
    prepare(home)
    before = seed(home)
    marker = f"gitian-fault-{uuid.uuid4().hex[:12]}"
    g = Gbuild(home, descriptor(tmp_path, SLOW_BUILD.format(marker=marker)), backend=backend)
    g.wait_for("Running build script")
    found = wait_until(lambda: processes_mentioning(marker), timeout=120, what="the build script")
    pids = [int(p.split(":")[0]) for p in found]
    if backend == "bwrap":
        victims = sorted({b for p in pids for b in _bwrap_ancestors(p)} | set(pids))
    else:
        victims = _lxc_init_pids(home)
    assert victims, "found no target process to kill"
    for v in victims:
        try:
            os.kill(v, signal.SIGKILL)
        except ProcessLookupError:
            pass
    code, err = g.finish()
    assert code == 1, err
    errors = [ln for ln in err.splitlines() if ln.startswith("gbuild: error:")]
    assert len(errors) == 1 and errors[0].isprintable(), err
    print("\n".join(err.splitlines()[-6:]))  # shown with -rP
    assert_clean(home, before, marker, err)
    if backend == "lxc":
        assert _lxc_init_pids(home) == []


@pytest.fixture
def small_home(
    shared_base: Home, tmp_path: Path
) -> Iterator[Home]:
    """A gitian home on its own 600 MB tmpfs (the base stays outside it)."""
    if os.geteuid() != 0:
        pytest.fail("needs root")
    root = tmp_path / "small-home"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600m", "tmpfs", os.fspath(root)],
                   check=True)
    try:
        h = Home(root)
        h.var.joinpath("cache").mkdir(parents=True)
        h.base("bookworm", "amd64").symlink_to(shared_base.base("bookworm", "amd64"))
        shared_base.package_cache.mkdir(parents=True, exist_ok=True)
        h.package_cache.symlink_to(shared_base.package_cache)
        prepare(h)
        yield h
    finally:
        from gitian.targets import make_target
        from gitian.targets.base import TargetConfig

        cfg = TargetConfig(home=Home(root), suite="bookworm", arch="amd64", distro="debian")
        try:
            make_target("bwrap", cfg).stop()
        finally:
            subprocess.run(["umount", "-l", os.fspath(root)], check=False)
    assert os.fspath(root) not in Path("/proc/mounts").read_text()


@pytest.mark.parametrize(
    "where",
    ["results", "cache"],
)
def test_disk_full_while_copying_back(small_home: Home, tmp_path: Path, where: str) -> None:
    home = small_home
    before = seed(home)
    marker = f"gitian-fault-{uuid.uuid4().hex[:12]}"
    dest = '"$OUTDIR"' if where == "results" else '"$GBUILD_PACKAGE_CACHE"'
    script = (
        f"# {marker}\nmkdir -p {dest}\necho small > \"$OUTDIR/small\"\n"
        f"truncate -s 1G {dest}/big\n"
    )
    g = Gbuild(home, descriptor(tmp_path, script))
    code, err = g.finish()
    assert code == 1, err
    errors = [ln for ln in err.splitlines() if ln.startswith("gbuild: error:")]
    assert len(errors) == 1 and errors[0].isprintable(), err
    print("\n".join(err.splitlines()[-6:]))  # shown with -rP
    assert "space" in err.lower(), err
    assert_clean(home, before, marker, err)
