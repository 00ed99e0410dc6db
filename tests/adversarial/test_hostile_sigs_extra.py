# ruff: noqa: F811
"""Hostile signature trees, extra cases (issue 6, item 2), beside test_hostile_sigs.py.

These are *signed* asserts (a good signature by a key in the keyring, as any
signer of a public sigs repository can make) whose YAML attacks the parser:
nesting deep enough to crash libyaml's composer (it recurses in C without a
limit), documents that expand to millions of nodes, scalars the constructor
chokes on, duplicate keys and tags hidden in nested values.  Each is that
signer's BAD ASSERT; gverify neither crashes nor stalls, and the five real
signers are still judged OK.  gverify runs as a subprocess here, so a
segfault is seen as one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

from gverify_fixtures import (  # type: ignore[import-not-found]  # noqa: E402
    Keys,
    copy_release,
    keys,  # noqa: F401 - fixture
    release_args,
    verdict_lines,
)

WHICH = "monero-win"  # 5 signers, all OK


def _signed(keys: Keys, rel: Path, who: str, package: str, data: bytes) -> None:
    d = rel / who
    d.mkdir()
    p = d / f"{package}-build.assert"
    p.write_bytes(data)
    keys.sign(p, keys.mallory)


HEAD = b"--- !!omap\n- out_manifest: ''\n"

HOSTILE = {
    "deepseq": b"--- !!omap\n- out_manifest: " + b"[" * 100_000 + b"]" * 100_000 + b"\n",
    "deepmap": b"--- !!omap\n- out_manifest: " + b"{a: " * 100_000 + b"}" * 100_000 + b"\n",
    "manynodes": HEAD + b"- optionals: [" + b"1," * 1_000_000 + b"1]\n",
    "quadratic": HEAD
    + b"- x: &a ["
    + b"y," * 5_000
    + b"y]\n- optionals: ["
    + b"*a," * 5_000
    + b"*a]\n",
    "baddate": HEAD + b"- release: 2020-13-45\n",
    "bigint": HEAD + b"- release: " + b"9" * 6000 + b"\n",
    "dupkey": b"--- !!omap\n- out_manifest: ''\n- release: v0.18.3.4-win\n- optionals:\n"
    b"    a: 1\n    a: 2\n",
    "nestedtag": HEAD + b"- optionals:\n    x: [1, !!python/object/apply:os.getpid []]\n",
    "mergekey": HEAD + b"- optionals:\n    <<: {a: 1}\n",
}


@pytest.mark.parametrize("who", sorted(HOSTILE))
def test_signed_hostile_yaml_is_that_signers_bad_assert(
    keys: Keys, tmp_path: Path, who: str
) -> None:
    sigs, rel, package, _ = copy_release(WHICH, tmp_path / "t")
    _signed(keys, rel, who, package, HOSTILE[who])
    env = {**os.environ, "GNUPGHOME": str(keys.home)}
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-c", "from gitian.cli.gverify import main; main()", "--no-markup",
         *release_args(WHICH, sigs)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    elapsed = time.monotonic() - t0
    assert r.returncode == 1, f"exit {r.returncode} (a crash is negative): {r.stderr[-2000:]}"
    assert "Traceback" not in r.stderr, r.stderr
    lines = verdict_lines(r.stdout)
    assert f"{who}: BAD ASSERT" in lines, r.stdout
    assert sum(line.endswith(": OK") for line in lines) == 5, r.stdout
    assert elapsed < 60, f"gverify took {elapsed:.1f}s"
