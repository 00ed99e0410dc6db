"""gbuild --rounds 2 --vary on real targets.

One tiny descriptor per variation, each deliberately not deterministic in one
way (it installs no package, so a round costs a clean target, apt-get update
and the script): ``--rounds 2 --vary`` must catch it, name the variation
responsible and point diffoscope's report at the file.  They run on
bubblewrap, from the session's shared base.  The example descriptor must pass
``--rounds 2 --vary`` on bubblewrap and on LXC.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gitian.home import Home
from gitian.manifest import read_report
from tests.conftest import require_tool
from tests.integration.conftest import BaseHome, mounts_under, run_ok
from tests.integration.test_gbuild import EXAMPLE, gbuild_argv, prepare

pytestmark = pytest.mark.integration

HEAD = """\
---
name: "vary-{name}"
distro: "debian"
suites:
- "bookworm"
architectures:
- "amd64"
reference_datetime: "2024-01-01 00:00:00"
script: |
"""

# variation -> (output file, script that makes it depend on that variation alone)
CASES = {
    "time": ("date.txt", 'date -u +%F > "$OUTDIR/date.txt"'),
    "hostname": ("host.txt", 'uname -n > "$OUTDIR/host.txt"'),
    "path": ("path.txt", 'pwd > "$OUTDIR/path.txt"'),
    "umask": ("mode.txt", 'touch made; stat -c %a made > "$OUTDIR/mode.txt"'),
    "procs": ("procs.txt", 'echo "$NUM_PROCS $(nproc)" > "$OUTDIR/procs.txt"'),
    "tz": ("tz.txt", 'date -d @0 +%H:%M > "$OUTDIR/tz.txt"'),
    "dirorder": (
        "order.txt",
        'mkdir d; touch d/one d/two d/three d/four; find d -mindepth 1 > "$OUTDIR/order.txt"',
    ),
    "locale": ("number.txt", 'printf "%\'.2f\\n" 1234.5 > "$OUTDIR/number.txt"'),
}


def gbuild(home: Home, backend: str, desc: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``gbuild ARGS DESC``: with ``--vary`` last, Click offers DESC to it as
    its value, and gbuild must see that it is the descriptor."""
    # without CI: with it gbuild also tees the build log to stdout
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    return run_ok(gbuild_argv(home, backend, desc, *args), env=env)


@pytest.fixture(scope="module")
def home(base_home: BaseHome) -> Home:
    require_tool("diffoscope")
    return base_home("bwrap")


@pytest.mark.parametrize("variation", list(CASES))
def test_each_variation_is_caught_and_named(home: Home, variation: str) -> None:
    out, script = CASES[variation]
    desc = home.root / f"vary-{variation}.yml"
    desc.write_text(HEAD.format(name=variation) + f'  echo same > "$OUTDIR/same.txt"\n  {script}\n')
    r = gbuild(home, "bwrap", desc, "--rounds", "2", "--vary")
    assert r.returncode == 1, r.stdout + r.stderr
    err = r.stderr
    head = "gbuild: error: not deterministic: round 2 (varied: tz, locale, umask, hostname, "
    assert head + "procs, path, time, dirorder) differs from round 1 in 1 of 2 output files" in err
    lines = err.splitlines()
    named = f"    {out}: caused by {variation} (rebuilt with each variation alone, only "
    at = [i for i, ln in enumerate(lines) if ln.startswith(named)]
    assert at, err
    # diffoscope's first difference for that file, and its report naming it
    assert lines[at[0] + 1].startswith("        first difference: line 1: "), err
    report = home.var / "rounds" / "diffoscope" / "1-vs-2.txt"
    assert "  diffoscope's full report: var/rounds/diffoscope/1-vs-2.txt" in err
    assert f"round-2/{out}" in report.read_text()
    assert "same.txt" not in report.read_text()
    assert not home.result_file(f"vary-{variation}").exists()
    assert (home.var / "rounds" / f"only-{variation}" / "out" / out).exists()
    assert mounts_under(home.root) == []


def test_example_passes_varied_rounds_on_bwrap(home: Home) -> None:
    prepare(home)
    r = gbuild(home, "bwrap", EXAMPLE, "--rounds", "2", "--vary")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all 2 rounds gave the same out_manifest, every round after the first varied" in r.stderr
    report = read_report(home.result_file("gitian-example"))
    assert r.stdout.startswith(report.out_manifest)
    # nothing of the variations reached the package manifest
    assert "faketime" not in report.base_manifests[0][1]
    assert "disorderfs" not in report.base_manifests[0][1]
    assert "warning: --vary" not in r.stderr  # every variation applied
    varied = (home.var / "rounds" / "2" / "bookworm-amd64.build-script").read_text()
    assert "umask 022" in varied and "NUM_PROCS=1" in varied
    assert mounts_under(home.root) == []


def test_example_passes_varied_rounds_on_lxc(base_home: BaseHome, lxc_net: str) -> None:
    home = base_home("lxc")
    prepare(home)
    r = gbuild(home, "lxc", EXAMPLE, "--rounds", "2", "--vary")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all 2 rounds gave the same out_manifest" in r.stderr
    assert "warning: --vary" not in r.stderr
    assert home.result_file("gitian-example").exists()
    assert mounts_under(home.root) == []
