"""gbuild end to end: the example descriptor on bubblewrap and LXC.

Bases come from the session fixture (a fresh Debian bookworm base); each
test gets a fresh gitian home.  The example is built on bwrap twice and on
LXC once: all three out_manifests must be identical.  gbuild interrupted
during the build script must leave no result, mount, container or process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import pytest

from gitian.home import Home, target_bin
from gitian.manifest import load_report, read_report
from gitian.targets import make_target
from gitian.targets.base import TargetConfig
from tests.conftest import git_in, make_upstream, wait_until
from tests.integration.conftest import (
    BaseHome,
    example_with,
    interrupt_the_package_step,
    layer_dirs,
    mounts_under,
    run_ok,
    snapshot,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "descriptors" / "example.yml"


def prepare(home: Home) -> str:
    out = subprocess.run(
        [os.fspath(ROOT / "descriptors" / "prepare-example"), os.fspath(home.root)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return out.stdout.strip()


def gbuild_argv(home: Home, backend: str, desc: Path, *args: str) -> list[str]:
    return [
        sys.executable, os.fspath(ROOT / "bin" / "gbuild"),
        "--backend", backend, "--workdir", os.fspath(home.root), *args, os.fspath(desc),
    ]  # fmt: skip


def gbuild_env() -> dict[str, str]:
    # Without CI in the environment: with it, gbuild also tees the build log
    # to its output (as classic), and these tests read that output.
    return {k: v for k, v in os.environ.items() if k != "CI"}


def gbuild_run(home: Home, backend: str, desc: Path = EXAMPLE, *args: str) -> tuple[str, str]:
    """gbuild, which must succeed: its stdout and its stderr (the progress lines)."""
    r = run_ok(gbuild_argv(home, backend, desc, *args), env=gbuild_env())
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout, r.stderr


def gbuild(home: Home, backend: str, desc: Path = EXAMPLE, *args: str) -> str:
    return gbuild_run(home, backend, desc, *args)[0]


Built = tuple[Home, str, dict[str, bytes]]
"""A home, gbuild's stdout, and the result and output files of that build."""


def first_build(home: Home, backend: str) -> Built:
    """The example's first build in ``home``: it makes the installed-packages layer."""
    prepare(home)
    stdout, stderr = gbuild_run(home, backend)
    assert "Keeping the installed packages as layer" in stderr
    assert len(layer_dirs(home)) == 1
    return home, stdout, snapshot(home)


@pytest.fixture(scope="module")
def bwrap_build(base_home: BaseHome) -> Built:
    return first_build(base_home("bwrap"), "bwrap")


@pytest.fixture(scope="module")
def lxc_build(base_home: BaseHome, lxc_net: str) -> Built:
    return first_build(base_home("lxc"), "lxc")


def test_example_on_bwrap(bwrap_build: Built) -> None:
    home, stdout, _ = bwrap_build
    report = read_report(home.result_file("gitian-example"))
    lines = report.out_manifest.splitlines()
    assert [ln.split("  ")[1] for ln in lines] == ["gitian-example.tar.gz", "gitian-example.zip"]
    # stdout: the out lines and the result's sha256, as classic
    assert stdout.startswith(report.out_manifest)
    assert stdout.rstrip().endswith("gitian-example-res.yml")
    assert "git:c884685f062074bf7af8574f6d086f76a0c53d2d hello" in report.in_manifest
    assert report.base_manifests[0][0] == "bookworm-amd64"
    assert "  gcc_" in report.base_manifests[0][1]
    script = (home.var / "build-script").read_text()
    assert "REFERENCE_DATETIME='2024-01-01 00:00:00'" in script  # the commit's author date
    assert "NUM_PROCS=2" in script
    assert (home.var / "build.log").read_text().startswith("+ ")
    # the tarball really holds the program, and it runs
    listing = subprocess.run(
        ["tar", "-tvzf", os.fspath(home.build / "out" / "gitian-example.tar.gz")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "gitian-example/hello" in listing and "2024-01-01 00:00" in listing
    # canon-zip ran in the target (from the build user's PATH): every member at the date
    with zipfile.ZipFile(home.build / "out" / "gitian-example.zip") as z:
        members = [(i.filename, i.date_time) for i in z.infolist()]
    assert members == [
        ("gitian-example/greeting.txt", (2024, 1, 1, 0, 0, 0)),
        ("gitian-example/hello", (2024, 1, 1, 0, 0, 0)),
    ]


def test_host_hashed_package_manifest_equals_grab_packages(bwrap_build: Built) -> None:
    # gbuild hashes the bound .deb cache itself; the script must agree byte for byte.
    home, _, _ = bwrap_build
    config = TargetConfig(home=home, suite="bookworm", arch="amd64", distro="debian")
    with make_target("bwrap", config).session() as t:
        t.run(
            ["apt-get", "--no-install-recommends", "-y", "install", "make", "gcc", "zip"],
            user="root", network=True, env={"DEBIAN_FRONTEND": "noninteractive"}, capture=True,
        )  # fmt: skip
        script = (target_bin() / "grab-packages.sh").read_bytes()
        out = t.run(["bash"], user="root", stdin=script, network=True, capture=True).stdout
    assert out == (home.var / "base-bookworm-amd64.manifest").read_bytes()
    report = read_report(home.result_file("gitian-example"))
    assert report.base_manifests[0][1].encode() == out


def test_rebuild_on_bwrap_from_the_layer_is_byte_identical(bwrap_build: Built) -> None:
    home, _, first = bwrap_build
    [layer] = layer_dirs(home)
    start = time.monotonic()
    _, stderr = gbuild_run(home, "bwrap", EXAMPLE, "-q")
    took = time.monotonic() - start
    assert snapshot(home) == first  # the result file and every output byte
    assert f"installed-packages layer {layer[:12]}" in (home.var / "install.log").read_text()
    assert layer_dirs(home) == [layer]
    assert mounts_under(home.root) == []
    # ... and so is a build that neither uses nor keeps a layer (the classic flow).
    gbuild_run(home, "bwrap", EXAMPLE, "-q", "--no-layer-cache")
    assert snapshot(home) == first
    print(f"rebuild on bwrap from its layer took {took:.1f}s")


def test_lxc_gives_the_same_out_manifest_and_rebuilds_from_its_layer(
    bwrap_build: Built, lxc_build: Built
) -> None:
    reference = read_report(bwrap_build[0].result_file("gitian-example"))
    home, _, first = lxc_build
    report = read_report(home.result_file("gitian-example"))
    assert report.out_manifest == reference.out_manifest
    assert "  gitian-example.zip\n" in report.out_manifest  # canon-zip ran on LXC too
    assert report.in_manifest == reference.in_manifest
    assert mounts_under(home.root) == []
    assert _lxc_containers(home) == []
    # LXC keeps a layer of its own (it writes resolv.conf into its target)
    assert layer_dirs(home) != layer_dirs(bwrap_build[0])
    _, stderr = gbuild_run(home, "lxc", EXAMPLE)
    assert "Using the installed-packages layer" in stderr
    assert "apt-get" not in stderr and "Updating apt-get" not in stderr
    assert snapshot(home) == first
    assert mounts_under(home.root) == [] and _lxc_containers(home) == []


EXTRA_PACKAGE = "hello"  # small, and not in the example or the base


@pytest.mark.parametrize("backend", ["bwrap", "lxc"])
def test_an_interrupted_layer_is_never_used_and_new_packages_make_a_new_layer(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    home, _, first = request.getfixturevalue(f"{backend}_build")
    [example_layer] = layer_dirs(home)
    desc = example_with(EXTRA_PACKAGE, tmp_path / "more.yml")
    argv = gbuild_argv(home, backend, desc)
    interrupt_the_package_step(argv, gbuild_env(), home, EXTRA_PACKAGE)
    assert mounts_under(home.root) == []
    if backend == "lxc":
        assert _lxc_containers(home) == []
    # The next build installs anew (nothing of the interrupted one is used) ...
    _, stderr = gbuild_run(home, backend, desc)
    assert "Installing additional packages" in stderr
    assert "Keeping the installed packages as layer" in stderr
    layers = layer_dirs(home)
    assert len(layers) == 2 and example_layer in layers  # ... and keeps a new layer
    report = read_report(home.result_file("gitian-example"))
    assert f"  {EXTRA_PACKAGE}_" in report.base_manifests[0][1]
    assert report.out_manifest == load_report(first["result"], "first").out_manifest
    listed = run_ok([sys.executable, os.fspath(ROOT / "bin" / "make-base-vm"),
                     "--workdir", os.fspath(home.root), "--list-layers"])  # fmt: skip
    assert f"make gcc zip {EXTRA_PACKAGE}" in listed.stdout and "2 layer(s)" in listed.stdout
    # The example still rebuilds from its own layer.
    _, stderr = gbuild_run(home, backend, EXAMPLE, "-q")
    assert snapshot(home) == first


FAILING_SCRIPT = """\
  echo building
  make -C hello CC=gcc
  test -x hello/no-such-output
  echo never
"""


def test_failing_script_says_where_on_bwrap(base_home: BaseHome, tmp_path: Path) -> None:
    """A build that fails says the step, the line of the descriptor's script
    (and of the file), and the last lines of var/build.log."""
    home = base_home("bwrap")
    prepare(home)
    head = EXAMPLE.read_text().split("script: |")[0]
    desc = tmp_path / "fails.yml"
    desc.write_text(head + "script: |\n" + FAILING_SCRIPT)
    r = run_ok(gbuild_argv(home, "bwrap", desc))
    assert r.returncode == 1, r.stdout + r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("gbuild: error:")]
    assert len(errors) == 1, r.stderr
    line = desc.read_text().splitlines().index("  test -x hello/no-such-output") + 1
    assert errors[0] == (
        "gbuild: error: Running build script (log in var/build.log): the build script failed "
        f"for bookworm amd64 with exit status 1, at line 3 of the descriptor's script "
        f"(fails.yml:{line}): test -x hello/no-such-output; last lines of var/build.log:"
    ), r.stderr
    lines = r.stderr.splitlines()
    tail = lines[lines.index(errors[0]) + 1 :]
    assert "      + make -C hello CC=gcc" in tail and "      + test -x hello/no-such-output" in tail
    assert f"  whole log: {home.var / 'build.log'}" in tail
    assert "Traceback" not in r.stderr
    assert not home.result_file("gitian-example").exists()
    assert mounts_under(home.root) == []


def _lxc_containers(home: Home) -> list[str]:
    lxcpath = home.var / "lxc"
    if not lxcpath.is_dir():
        return []
    r = run_ok(["lxc-ls", "-P", os.fspath(lxcpath), "--active"])
    return r.stdout.split()


def _processes_with(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path("/proc", pid, "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(pid))
    return found


SLOW_SCRIPT = """\
  echo build-started
  exec -a {marker} sleep 600
"""


@pytest.mark.parametrize(
    ("backend", "signum"),
    [("bwrap", signal.SIGINT), ("bwrap", signal.SIGTERM), ("lxc", signal.SIGINT)],
    ids=["bwrap-SIGINT", "bwrap-SIGTERM", "lxc-SIGINT"],
)
def test_signal_during_build_script_leaves_nothing(
    base_home: BaseHome, request: pytest.FixtureRequest, backend: str, signum: int,
    tmp_path: Path,
) -> None:  # fmt: skip
    if backend == "lxc":
        request.getfixturevalue("lxc_net")
    home = base_home(backend)
    prepare(home)
    marker = f"gitian-test-{uuid.uuid4().hex[:12]}"
    text = EXAMPLE.read_text().split("script: |")[0] + "script: |\n"
    desc = tmp_path / "slow.yml"
    desc.write_text(text + SLOW_SCRIPT.format(marker=marker))
    home.result.mkdir(parents=True, exist_ok=True)
    previous = home.result_file("gitian-example")
    previous.write_bytes(b"previous result\n")
    proc = subprocess.Popen(
        gbuild_argv(home, backend, desc), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    log = home.var / "build.log"

    def script_running() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"gbuild ended early: {proc.communicate()[0].decode()}")
        started = log.exists() and b"build-started" in log.read_bytes()
        return started and bool(_processes_with(marker))

    try:
        wait_until(script_running, timeout=300, what="the build script", interval=0.2)
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text_out = out.decode()
    assert proc.returncode == (130 if signum == signal.SIGINT else 143), text_out
    assert ("interrupted" if signum == signal.SIGINT else "SIGTERM") in text_out
    assert previous.read_bytes() == b"previous result\n"  # untouched, no new result
    assert mounts_under(home.root) == []
    assert _processes_with(marker) == []
    if backend == "lxc":
        assert _lxc_containers(home) == []


# -- several architectures in one run (needs an i386 base: made here, once) --------


@pytest.fixture(scope="module")
def i386_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("GITIAN_TEST_BASE_HOME")
    if given and (Path(given) / "base-bookworm-i386" / "etc").is_dir():
        return Path(given) / "base-bookworm-i386"
    from gitian.targets.base import BaseOptions
    from gitian.targets.rootfs import make_base

    home = Home(tmp_path_factory.mktemp("gitian-i386"))
    make_base(home, BaseOptions(distro="debian", suite="bookworm", arch="i386"), mirror_host=None)
    return home.base("bookworm", "i386")


TWO_ARCH_SCRIPT = """\
  make -C hello CC=gcc CFLAGS="-O2 -g0"
  cp hello/hello "$OUTDIR/hello-$GBUILD_BITS"
  uname -m > "$OUTDIR/uname-$GBUILD_BITS"
"""


def test_two_architectures_in_one_run(base_home: BaseHome, i386_base: Path, tmp_path: Path) -> None:
    home = base_home("bwrap")
    home.base("bookworm", "i386").symlink_to(i386_base)
    prepare(home)
    text = EXAMPLE.read_text().split("script: |")[0].replace('- "amd64"', '- "amd64"\n- "i386"')
    desc = tmp_path / "two.yml"
    desc.write_text(text + "script: |\n" + TWO_ARCH_SCRIPT)
    gbuild(home, "bwrap", desc)
    report = read_report(home.result_file("gitian-example"))
    assert [k for k, _ in report.base_manifests] == ["bookworm-amd64", "bookworm-i386"]
    assert "_i386.deb" in report.base_manifests[1][1]
    names = [ln.split("  ")[1] for ln in report.out_manifest.splitlines()]
    assert names == ["hello-32", "hello-64", "uname-32", "uname-64"]
    out = home.build / "out"
    assert (out / "hello-32").read_bytes()[4] == 1  # ELFCLASS32
    assert (out / "hello-64").read_bytes()[4] == 2  # ELFCLASS64
    assert (out / "uname-32").read_text() == "i686\n"  # setarch i386
    assert (out / "uname-64").read_text() == "x86_64\n"
    assert mounts_under(home.root) == []


# -- the checkout a build script sees depends on the command only (issue 14 item 2) --

DESCRIBE_DESC = """\
name: "describe"
distro: "debian"
suites:
- "bookworm"
architectures:
- "amd64"
reference_datetime: "2024-01-01 00:00:00"
remotes:
- "url": "https://example.invalid/src.git"
  "dir": "src"
script: |
  cd src
  git describe --always > "$OUTDIR/describe"
  git tag > "$OUTDIR/tags"
  git for-each-ref > "$OUTDIR/refs"
  git log --all --format=%H > "$OUTDIR/log"
"""


def test_a_commit_built_by_id_looks_the_same_after_a_build_by_tag(
    base_home: BaseHome, tmp_path: Path
) -> None:
    src = make_upstream(tmp_path / "upstream")  # v1.0, then a later commit on main
    release = git_in(src, "rev-parse", "v1.0^{commit}")
    desc = tmp_path / "describe.yml"
    desc.write_text(DESCRIBE_DESC)
    url = f"src={src}"

    def build(home: Home, commit: str) -> tuple[dict[str, str], str]:
        gbuild(home, "bwrap", desc, "-q", "--url", url, "--commit", f"src={commit}")
        out = home.build / "out"
        seen = {p.name: p.read_text() for p in sorted(out.iterdir())}
        return seen, read_report(home.result_file("describe")).out_manifest

    builder = base_home("bwrap")
    by_tag, _ = build(builder, "v1.0")
    assert by_tag["describe"] == "v1.0\n" and by_tag["tags"] == "v1.0\n"
    then_by_id, manifest = build(builder, release)
    assert (builder.inputs / "src").is_dir()  # the fetch cache still holds the tag ...
    assert "v1.0" in git_in(builder.inputs / "src", "tag")
    other, other_manifest = build(base_home("bwrap"), release)  # ... another builder never had it
    assert then_by_id == other and manifest == other_manifest
    assert then_by_id["describe"] == release[:7] + "\n"
    assert then_by_id["tags"] == "" and then_by_id["refs"] == ""
    assert then_by_id["log"] == release + "\n"  # nothing of the later history either
    assert not list(builder.var.glob(".handover-*"))  # the hand-over copy is gone
