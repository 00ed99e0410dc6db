"""gbuild's command line: every classic option, and bad input refused up front."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gitian.cli.gbuild import cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "descriptors" / "example.yml"

CLASSIC_OPTIONS = [
    "--allow-sudo", "-i", "--skip-image", "--upgrade", "-q", "--quiet", "-j", "--num-make",
    "-m", "--memory", "-c", "--commit", "-u", "--url", "-o", "--cache-read-only",
    "--skip-fetch", "--fetch-branches", "--fetch-tags", "--skip-cleanup",
]  # fmt: skip


def test_every_classic_option_exists() -> None:
    names = {n for p in cli.params for n in (*p.opts, *p.secondary_opts)}
    missing = [o for o in CLASSIC_OPTIONS if o not in names]
    assert not missing
    defaults = {p.name: p.default for p in cli.params}
    assert defaults["num_make"] == 2 and defaults["memory"] == 2000


def _main(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "bin" / "gbuild"), "--workdir", str(tmp_path), *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/no/such.yml"], "no such descriptor"),
        (["-c", "hello=-x", str(EXAMPLE)], "is not a commit"),
        (["-c", "nodir=abc", str(EXAMPLE)], "no remote with dir 'nodir'"),
        (["-u", "hello=ext::sh", str(EXAMPLE)], "runs programs"),
        (["--backend", "bwrap", str(EXAMPLE)], "greeting.txt"),  # inputs not prepared
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    r = _main(args, tmp_path)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "build").exists()  # nothing started, nothing wiped
    assert not (tmp_path / "result").exists()


def test_typo_refused_and_custom_key_warned(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    typo = tmp_path / "typo.yml"
    typo.write_text(text.replace("packages:", "pakages:"))
    r = _main(["--backend", "bwrap", str(typo)], tmp_path)
    assert r.returncode == 2, r.stderr
    assert "typo.yml: unknown key 'pakages' (did you mean 'packages'?)" in r.stderr
    assert not (tmp_path / "build").exists()
    custom = tmp_path / "custom.yml"
    custom.write_text(text + "upstream_version: '1.0'\n")
    r = _main(["--backend", "bwrap", str(custom)], tmp_path)
    # It goes on (and stops at the inputs, which are not prepared here).
    assert "warning: custom.yml: unknown key 'upstream_version' ignored\n" in r.stderr
    assert "greeting.txt" in r.stderr and r.returncode == 2


def test_help_runs() -> None:
    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0, r.output
    assert "--skip-cleanup" in r.output


def test_layer_options(tmp_path: Path) -> None:
    names = {n for p in cli.params for n in p.opts}
    assert "--no-layer-cache" in names
    r = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "gbuild"), "--workdir", str(tmp_path), str(EXAMPLE)],
        capture_output=True, text=True, check=False,
        env={**os.environ, "GITIAN_LAYER_LIMIT": "lots"},
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "GITIAN_LAYER_LIMIT must be a number (0 or more), not 'lots'" in r.stderr
    assert not (tmp_path / "build").exists()
