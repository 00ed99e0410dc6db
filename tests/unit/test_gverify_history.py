"""A whole history in one run (issue 12, Done means): ``gverify --all`` over
Monero's gitian.sigs as published (208 releases, 1,314 signed asserts, 23
descriptor names) with its gitian-pubkeys, every verdict that is not OK
checked again here with plain gpg or by reading the asserts.

It needs nothing but gpg, yet takes 15-30 s on a two-CPU machine, so it
carries the ``integration`` marker: CI runs it, plain ``pytest`` does not
(``pytest -m integration tests/unit/test_gverify_history.py`` does)."""
# ruff: noqa: F811

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from gverify_fixtures import extract, name_only, run_gverify

from gitian import gpgkeys
from gitian.manifest import report_fields

NAMES = [
    f"monero-{platform}-0.{major}"
    for platform in ("android", "freebsd", "linux", "osx", "win")
    for major in range(14, 19)
    if (platform, major) not in (("android", 14), ("freebsd", 14))
]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return extract("monero-gitian.sigs.tar.xz", tmp_path_factory.mktemp("monero"))


@pytest.fixture(scope="module")
def home(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    h = tmp_path_factory.mktemp("gnupg")
    h.chmod(0o700)
    gpgkeys.import_keys(h, sorted((tree / "gitian-pubkeys").glob("*.asc")))
    return h


def _gpg(home: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["gpg", "--batch", "--homedir", str(home), "--no-auto-check-trustdb", *args],
        capture_output=True,
        check=False,
    )


@pytest.mark.integration
def test_a_whole_history_in_one_run(
    tree: Path,
    home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    descs = name_only(tmp_path, NAMES)
    r = run_gverify(["--all", "-d", str(tree), "--json", *descs], capsys, monkeypatch, home)
    assert r.code == 1, r.err
    doc = json.loads(r.out)
    # Every release directory of the tree with asserts, each with its descriptor.
    on_disk = sorted(
        {
            (a.parent.parent.name, a.name.removesuffix("-build.assert"))
            for a in tree.glob("*/*/*.assert")
        }
    )
    assert len(on_disk) == 208 and {n for _, n in on_disk} == set(NAMES)
    assert sorted((x["release"], x["package"]) for x in doc["releases"]) == on_disk
    signers = [(x, s) for x in doc["releases"] for s in x["signers"]]
    assert len(signers) == len(list(tree.glob("*/*/*-build.assert.sig"))) == 1314
    assert Counter(s["verdict"] for _, s in signers) == {
        "OK": 1174,
        "MISMATCH": 75,
        "BAD SIGNATURE": 65,
    }
    assert sum(x["verified"] for x in doc["releases"]) == 100

    # Each BAD SIGNATURE, by plain gpg: a valid signature (EXPKEYSIG) made
    # after the key expired, by gpg's own listing of the key.
    expiry: dict[str, int] = {}
    for _, s in signers:
        if s["verdict"] != "BAD SIGNATURE":
            continue
        status = _gpg(home, "--status-fd", "1", "--verify", s["signature"], s["assert"]).stdout
        words = next(ln.split() for ln in status.splitlines() if b" VALIDSIG " in ln)
        assert b"[GNUPG:] EXPKEYSIG " in status, s["signer"]
        fpr = words[2].decode()
        if fpr not in expiry:
            listing = _gpg(home, "--with-colons", "--list-keys", fpr).stdout.decode()
            expiry[fpr] = min(
                int(f.split(":")[6])
                for f in listing.splitlines()
                if f.split(":")[0] in ("pub", "sub") and f.split(":")[6]
            )
        assert int(words[4]) > expiry[fpr], s["signer"]

    # Each MISMATCH, by reading the asserts: in Monero's history, every one is
    # an assert signed for another release (a builder's -r naming the linux
    # release on the android one, say), never a different output.
    for x, s in signers:
        if s["verdict"] != "MISMATCH":
            continue
        mine = report_fields(Path(s["assert"]).read_bytes(), s["assert"])
        ref = next(t for t in x["signers"] if t["signer"] == x["reference"])
        theirs = report_fields(Path(ref["assert"]).read_bytes(), ref["assert"])
        assert mine["release"] != x["release"] == theirs["release"], s["assert"]
        assert s["differences"]["release"] == [mine["release"], x["release"]]
        assert mine["out_manifest"] == theirs["out_manifest"], s["assert"]

    # Some OK ones too, by plain gpg's exit status.
    for _, s in [p for p in signers if p[1]["verdict"] == "OK"][::97]:
        assert _gpg(home, "--verify", s["signature"], s["assert"]).returncode == 0
