"""gverify reads a signed assert of every era of the real sigs histories
(tests/data/eras, picked by bench/real-history.py --samples): the older
Psych spellings ``--- !omap`` with and without a trailing space, quoted
scalars with the non-specific tag ``! '...'``, ``optionals: `` with a
trailing space and without."""
# ruff: noqa: F811

from __future__ import annotations

from pathlib import Path

import pytest
from gverify_fixtures import run_gverify
from testdata import DATA

from gitian import gpgkeys

ERAS = DATA / "eras"
SAMPLES = sorted(p for p in ERAS.iterdir() if p.is_dir() and p.name != "keys")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    h = tmp_path_factory.mktemp("eras-keys")
    h.chmod(0o700)
    gpgkeys.import_keys(h, sorted((ERAS / "keys").glob("*.gpg")))
    return h


def test_every_dialect_is_there() -> None:
    heads = {f.read_bytes().split(b"\n", 1)[0] for f in ERAS.glob("*/*/*/*.assert")}
    assert heads == {b"--- !omap", b"--- !omap ", b"--- !!omap"}
    bang = [f for f in ERAS.glob("*/*/*/*.assert") if b": ! '" in f.read_bytes()]
    assert len(bang) >= 2


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.name for p in SAMPLES])
def test_each_era_verifies(
    sample: Path,
    home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (release,) = [p.name for p in sample.iterdir()]
    (assert_file,) = sample.glob("*/*/*.assert")
    name = assert_file.name[: -len("-build.assert")]
    desc = tmp_path / "desc.yml"
    desc.write_text(f"name: {name}\n")
    r = run_gverify(
        ["--no-markup", "-d", str(sample), "-r", release, str(desc)], capsys, monkeypatch, home
    )
    assert r.code == 0, r.out + r.err
    assert f"{assert_file.parent.name}: OK\n" in r.out and "Verified." in r.out
