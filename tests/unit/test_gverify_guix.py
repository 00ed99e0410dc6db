"""The Guix attestation layout (issue 12 item 4): bitcoin-core/guix.sigs
releases 29.4 and 26.0 as published, with their builder-keys/."""
# ruff: noqa: F811

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gverify_fixtures import (
    GUIX,
    Keys,
    builder_keys,
    keys,  # noqa: F401 - fixture
    name_only,
    run_gverify,
    verdict_lines,
)


def _signers(release: str, kind: str) -> list[str]:
    return sorted(p.parent.name for p in (GUIX / release).glob(f"*/{kind}.SHA256SUMS"))


def _groups(release: str, kind: str) -> dict[bytes, list[str]]:
    """The signers of ``kind`` grouped by the bytes of what they attested (read here)."""
    out: dict[bytes, list[str]] = {}
    for s in _signers(release, kind):
        out.setdefault((GUIX / release / s / f"{kind}.SHA256SUMS").read_bytes(), []).append(s)
    return out


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    signers = sorted({p.name for rel in GUIX.iterdir() for p in rel.iterdir()})
    return builder_keys(tmp_path_factory.mktemp("guix") / "builder-keys", signers)


def test_a_guix_release_is_detected_and_judged_per_kind(
    keys_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    r = run_gverify(
        ["--no-markup", "-v", "-d", str(GUIX), "-r", "29.4", "--keys-dir", str(keys_dir)],
        capsys,
        monkeypatch,
    )
    assert r.code == 1, r.err
    reports = r.out.split("Summary for ")[1:]
    assert [x.split(":")[0] for x in reports] == [
        "29.4 all.SHA256SUMS",
        "29.4 noncodesigned.SHA256SUMS",
    ]
    for kind, report in zip(("all", "noncodesigned"), reports, strict=True):
        groups = _groups("29.4", kind)
        (big,) = [g for g in groups.values() if len(g) > 1]
        (odd,) = [g for g in groups.values() if len(g) == 1]
        n = len(_signers("29.4", kind))
        assert report.startswith(f"29.4 {kind}.SHA256SUMS: {n} signers, {n - 1} OK, 1 MISMATCH")
        assert f"{len(big)} agree on out_manifest" in report and ", ".join(big) in report
        assert odd == ["yuvicc"] and "1 agrees on out_manifest" in report
    # sipsorcery attested only the final (codesigned) build: not in noncodesigned's report.
    assert "sipsorcery" not in _signers("29.4", "noncodesigned")
    all_part, non_part, _ = r.out.split("Verification FAILED.\n")
    assert "sipsorcery: OK" in all_part and "sipsorcery" not in non_part
    # -v: which files yuvicc's build differs in (powerpc64le instead of macOS).
    assert "  only in yuvicc:  bitcoin-29.4-powerpc64le-linux-gnu.tar.gz" in all_part
    assert "  only in Emzy (reference):  bitcoin-29.4-arm64-apple-darwin.zip" in all_part
    assert verdict_lines(r.out).count("yuvicc: MISMATCH") == 2


def test_guix_keys_quorum_and_checksums(
    keys_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """26.0: keys that expired since (signatures made before: OK), a builder
    whose signing key is no longer in builder-keys (BAD SIGNATURE), quorum."""
    sums = tmp_path / "SHA256SUMS"
    args = ["--no-markup", "-d", str(GUIX), "-r", "26.0", "--keys-dir", str(keys_dir)]
    r = run_gverify([*args, "--sha256sums", str(sums)], capsys, monkeypatch)
    assert r.code == 1 and not sums.exists()
    lines = verdict_lines(r.out)
    assert lines.count("svanstaa: BAD SIGNATURE") == 2
    assert "gverify: no public key for key B14CC9F833238F85 in the keyring" in r.out
    assert lines.count("Emzy: OK") == 2  # an expired key, signed before it expired
    r = run_gverify([*args, "--min-ok", "20", "--sha256sums", str(sums)], capsys, monkeypatch)
    assert r.code == 0, r.out + r.err
    # The content every good signer attested: all.SHA256SUMS, then what only
    # noncodesigned.SHA256SUMS lists.
    (final,) = [k for k, g in _groups("26.0", "all").items() if "achow101" in g]
    (first,) = [k for k, g in _groups("26.0", "noncodesigned").items() if "achow101" in g]
    want = final.decode().splitlines()
    want += [ln for ln in first.decode().splitlines() if ln not in want]
    assert sums.read_text() == "".join(f"{ln}\n" for ln in want)
    r = run_gverify([*args, "--min-ok", "23"], capsys, monkeypatch)
    assert r.code == 1 and "--min-ok 23: 21 OK signer(s)" in r.out


def test_guix_json_and_all(
    keys_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    r = run_gverify(
        ["--json", "--all", "-d", str(GUIX), "--keys-dir", str(keys_dir)], capsys, monkeypatch
    )
    doc = json.loads(r.out)
    assert [(x["release"], x["package"]) for x in doc["releases"]] == [
        ("22.0rc2", "all"),
        ("22.0rc2", "noncodesigned"),
        ("26.0", "all"),
        ("26.0", "noncodesigned"),
        ("29.4", "all"),
        ("29.4", "noncodesigned"),
    ]
    assert {x["layout"] for x in doc["releases"]} == {"guix"}
    yuvicc = next(s for s in doc["releases"][4]["signers"] if s["signer"] == "yuvicc")
    assert yuvicc["verdict"] == "MISMATCH"
    assert yuvicc["assert"].endswith("29.4/yuvicc/all.SHA256SUMS")
    assert yuvicc["signature"].endswith("29.4/yuvicc/all.SHA256SUMS.asc")
    assert "bitcoin-29.4-powerpc64le-linux-gnu.tar.gz" in yuvicc["differences"]["only_in_signer"]


def test_guix_usage(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    desc = name_only(tmp_path, ["bitcoin"])
    r = run_gverify(
        ["--guix", "-d", str(GUIX), "-r", "29.4", *desc], capsys, monkeypatch, keys.home
    )
    assert r.code == 2 and "--guix takes no descriptor" in r.err
    r = run_gverify(["--guix", "-r", "29.4"], capsys, monkeypatch)
    assert r.code == 2 and "needs -d" in r.err
    (tmp_path / "sigs" / "v1" / "alice").mkdir(parents=True)
    r = run_gverify(["-d", str(tmp_path / "sigs"), "-r", "v1"], capsys, monkeypatch)
    assert r.code == 2 and "missing DESCRIPTOR" in r.err
    # --guix on a tree without Guix attestations: the release holds none.
    r = run_gverify(["--guix", "-d", str(tmp_path / "sigs"), "-r", "v1"], capsys, monkeypatch)
    assert r.code == 2 and "holds no <kind>.SHA256SUMS attestations" in r.err


def test_a_guix_attestation_that_is_not_a_checksum_list(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validly signed, but not sha256sum lines: BAD ASSERT (signed by Trent here)."""
    rel = tmp_path / "guix" / "1.0"
    for who, text in (("trent", "not checksums\n"), ("mallory", "")):
        d = rel / who
        d.mkdir(parents=True)
        (d / "all.SHA256SUMS").write_text(text)
        keys.sign(d / "all.SHA256SUMS", who, out=d / "all.SHA256SUMS.asc")
    r = run_gverify(
        ["--no-markup", "--guix", "-d", str(rel.parent), "-r", "1.0"],
        capsys,
        monkeypatch,
        keys.home,
    )
    assert r.code == 1
    assert verdict_lines(r.out) == ["mallory: BAD ASSERT", "trent: BAD ASSERT"]
    assert "line 1 is not a sha256sum line: 'not checksums'" in r.out
    assert "empty, not a list of checksums" in r.out


def test_checksums_without_a_last_newline(
    keys_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """guix.sigs 22.0rc1 and 22.0rc2 attestations end their lines in CRLF and
    the last one in nothing; the checksums written end each line in LF."""
    attested = (GUIX / "22.0rc2" / "achow101" / "all.SHA256SUMS").read_bytes()
    assert not attested.endswith(b"\n") and b"\r\n" in attested
    sums = tmp_path / "SHA256SUMS"
    args = [
        "-d",
        str(GUIX),
        "-r",
        "22.0rc2",
        "--keys-dir",
        str(keys_dir),
        "--sha256sums",
        str(sums),
    ]
    r = run_gverify(args, capsys, monkeypatch)
    assert r.code == 0, r.out + r.err
    assert sums.read_bytes().startswith(attested.replace(b"\r\n", b"\n") + b"\n")
    assert b"\r" not in sums.read_bytes()


def test_checksum_lines_split_at_newlines_only() -> None:
    """A name holding U+2028 (where str.splitlines() breaks) stays one line, so
    no line can be slipped into the checksums written; controls are refused."""
    from gitian.errors import InputError
    from gitian.manifest import check_sums, sums_lines

    h = "a" * 64
    text = f"{h}  x\u2028{'b' * 64}  evil.tar.gz\n"
    check_sums(text, "t")
    assert sums_lines(text) == [text[:-1]]
    assert sums_lines(f"{h}  y\r\r\n") == [f"{h}  y"]
    for bad in (f"{h}  x\x1b[2J\n", f"{h}  x\rmore\n", f"{h}  x\n\n", "\n"):
        with pytest.raises(InputError):
            check_sums(bad, "t")
