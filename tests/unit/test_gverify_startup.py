"""gverify's start-up stays lean (issue 2): what a plain verification loads.

Speed itself is measured by bench/gverify.py, not here; these tests pin down
the cause.  A plain run over a real release must verify without importing
the modules that cost start-up time (typing, dataclasses, pathlib,
subprocess, hashlib, PyYAML, Click), and the lean paths must give the same
report as the ordinary ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gverify_fixtures import COMPAT, ROOT, Keys, keys, release_args  # noqa: F401 - fixture

HEAVY = (
    "typing",
    "dataclasses",
    "inspect",
    "pathlib",
    "subprocess",
    "hashlib",
    "yaml",
    "click",
    "datetime",
    "contextlib",
    "shlex",
)

# Runs gverify's console entry as the console script does, and reports the
# exit status and which heavy modules were loaded by the time it exited.
PROBE = """
import json, os, sys
heavy = json.loads(sys.argv[1])
real_exit = os._exit
def report(code):
    sys.stdout.flush()
    sys.stderr.write(json.dumps({"code": code, "loaded": [m for m in heavy if m in sys.modules]}))
    sys.stderr.flush()
    real_exit(0)
os._exit = report
sys.argv = ["gverify", *sys.argv[2:]]
from gitian.cli.gverify import main
main()
"""


def _probe(args: list[str], home: Path) -> tuple[int, list[str], str]:
    env = dict(os.environ, GNUPGHOME=str(home), PYTHONPATH=str(ROOT))
    env.pop("GITIAN_DEBUG", None)
    # json is the probe's own; it is not one of the modules looked for.
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(HEAVY), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    result = json.loads(proc.stderr.strip().splitlines()[-1])
    return result["code"], result["loaded"], proc.stdout


@pytest.mark.parametrize("which", ["monero-linux", "monero-win", "monero-osx"])
def test_plain_run_loads_nothing_heavy(which: str, keys: Keys) -> None:  # noqa: F811
    code, loaded, out = _probe(release_args(which), keys.home)
    assert code == 0, out
    assert "Verified." in out
    assert loaded == [], f"gverify's start-up loaded {loaded}"


def test_failing_release_still_reports_without_heavy_modules(keys: Keys) -> None:  # noqa: F811
    # jonatack's bad signature is checked again alone (verify_detached, which
    # uses subprocess); the rest of the run stays lean.
    code, loaded, out = _probe(release_args("bitcoin"), keys.home)
    assert code == 1, out
    assert "jonatack: BAD SIGNATURE" in out
    assert set(loaded) <= {"subprocess", "contextlib", "signal"}, loaded


def test_lean_and_ordinary_paths_give_the_same_report(keys: Keys) -> None:  # noqa: F811
    """The prefetching, miniyaml and lean-parser paths against the ordinary
    ones (Click's parser, which also turns the prefetch off with --keyring)."""
    args = release_args("monero-linux")
    env = dict(os.environ, GNUPGHOME=str(keys.home), PYTHONPATH=str(ROOT))
    env.pop("GITIAN_DEBUG", None)
    lean = subprocess.run(
        [sys.executable, "-m", "gitian.cli.gverify", "--json", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    # "--json=" is not a spelling the lean parser takes: Click parses it.
    ordinary = subprocess.run(
        [
            sys.executable,
            "-m",
            "gitian.cli.gverify",
            "--keyring",
            str(keys.home / "pubring.kbx"),
            "--min-ok=1",
            "--json",
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert lean.returncode == ordinary.returncode == 0, lean.stderr + ordinary.stderr
    a, b = json.loads(lean.stdout), json.loads(ordinary.stdout)
    assert b.pop("min_ok") == 1 and a.pop("min_ok") is None
    # gpg's own text differs: the throwaway home of --keyring gets a trustdb.
    for report in (a, b):
        for signer in report["signers"]:
            signer["gpg"].pop("text")
    assert a == b
    assert len(a["signers"]) == 11
    assert COMPAT.is_dir()


@pytest.mark.parametrize("output", ["full", "closed"])
def test_unwritable_output_is_one_error_line(keys: Keys, output: str) -> None:  # noqa: F811
    env = dict(os.environ, GNUPGHOME=str(keys.home), PYTHONPATH=str(ROOT))
    argv = [sys.executable, "-m", "gitian.cli.gverify", *release_args("monero-linux")]
    if output == "full":
        with open("/dev/full", "w") as full:
            proc = subprocess.run(argv, env=env, stdout=full, stderr=subprocess.PIPE, text=True)
        expected = "gverify: error: cannot write the report to standard output: No space left"
    else:
        proc = subprocess.run(
            ["sh", "-c", 'exec "$@" >&-', "sh", *argv], env=env, stderr=subprocess.PIPE, text=True
        )
        expected = "gverify: error: standard output is closed"
    assert proc.returncode == 1
    assert proc.stderr.startswith(expected), proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
