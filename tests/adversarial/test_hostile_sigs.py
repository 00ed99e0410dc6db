# ruff: noqa: F811
"""gverify on hostile signature trees (issue 6, item 2).

Each hostile thing is that signer's failure, named in its verdict; gverify
neither crashes nor executes anything, never prints a control character it
read, and still judges every other signer.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

from gverify_fixtures import (  # noqa: E402
    Keys,
    copy_release,
    keys,  # noqa: F401 - fixture
    release_args,
    run_gverify,
    verdict_lines,
)

WHICH = "monero-win"  # 5 signers: MoneroArbo SChernykh jeffro256 lobster-kerouac scoobybejesus


def _tree(tmp_path: Path) -> tuple[Path, Path, str]:
    sigs, rel, package, _ = copy_release(WHICH, tmp_path / "t")
    return sigs, rel, package


def _run(
    keys: Keys,
    sigs: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *extra: str,
) -> tuple[int, str, str]:
    r = run_gverify([*extra, *release_args(WHICH, sigs)], capsys, monkeypatch, keys.home)
    return r.code, r.out, r.err


def _ok_count(out: str) -> int:
    return sum(line.endswith(": OK") for line in verdict_lines(out))


def _only_our_escapes(out: str) -> bool:
    """Every ESC in the output is our own bold on/off markup."""
    return re.sub(r"\x1b\[[01]m", "", out).find("\x1b") == -1


def _add_signer(rel: Path, name: str | bytes, package: str, assert_bytes: bytes) -> Path:
    d = os.path.join(os.fsencode(rel), os.fsencode(name))
    os.mkdir(d)
    p = Path(os.fsdecode(d)) / f"{package}-build.assert"
    p.write_bytes(assert_bytes)
    return p


def test_tagged_assert_is_never_executed(
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sigs, rel, package = _tree(tmp_path)
    marker = tmp_path / "pwned"
    evil = (
        "--- !!omap\n"
        f"- out_manifest: !!python/object/apply:os.system ['touch {marker}']\n"
        "- release: v0.18.3.4-win\n"
        f"- name: {package}\n"
    ).encode()
    keys.sign(_add_signer(rel, "mallory", package, evil), keys.mallory)
    code, out, _ = _run(keys, sigs, capsys, monkeypatch, "--no-markup")
    assert code == 1
    assert "mallory: BAD ASSERT" in verdict_lines(out)
    assert "tag" in out
    assert not marker.exists()
    assert _ok_count(out) == 5


def test_invalid_yaml_and_wrong_shape(
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sigs, rel, package = _tree(tmp_path)
    keys.sign(_add_signer(rel, "broken", package, b"- out_manifest: [unclosed\n"), keys.mallory)
    keys.sign(_add_signer(rel, "shape", package, b"just a string\n"), keys.mallory)
    keys.sign(_add_signer(rel, "binary", package, b"\x00\xff\xfe"), keys.mallory)
    bomb = b"a: &a [x, x, x, x, x, x, x, x, x]\n" + b"".join(
        b"%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n" % ((c, c) + (c - 1,) * 9)
        for c in range(ord("b"), ord("k"))
    )
    keys.sign(_add_signer(rel, "bomb", package, bomb), keys.mallory)
    code, out, _ = _run(keys, sigs, capsys, monkeypatch, "--no-markup")
    assert code == 1
    lines = verdict_lines(out)
    for who in ("broken", "shape", "binary", "bomb"):
        assert f"{who}: BAD ASSERT" in lines
    assert _ok_count(out) == 5


def test_huge_files_are_not_read(
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sigs, rel, package = _tree(tmp_path)
    big = _add_signer(rel, "huge", package, b"")
    with open(big, "wb") as f:  # sparse: 8 GiB that take no space
        f.truncate(8 << 30)
    (big.parent / (big.name + ".sig")).write_bytes(b"x")
    bigsig = _add_signer(rel, "hugesig", package, b"out_manifest: ''\n")
    with open(bigsig.parent / (bigsig.name + ".sig"), "wb") as f:
        f.truncate(1 << 30)
    code, out, _ = _run(keys, sigs, capsys, monkeypatch, "--no-markup")
    assert code == 1
    lines = verdict_lines(out)
    assert "huge: REFUSED" in lines and "hugesig: REFUSED" in lines
    assert "larger than" in out
    assert _ok_count(out) == 5


def test_symlinks_out_of_the_tree_are_refused(
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sigs, rel, package = _tree(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    # A complete, validly signed signer kept outside the tree.
    src = rel / "jeffro256"
    for f in src.iterdir():
        (outside / f.name).write_bytes(f.read_bytes())
    os.symlink(outside, rel / "linkdir")
    d = rel / "linkfile"
    d.mkdir()
    os.symlink(outside / f"{package}-build.assert", d / f"{package}-build.assert")
    (d / f"{package}-build.assert.sig").write_bytes(
        (outside / f"{package}-build.assert.sig").read_bytes()
    )
    os.symlink("/etc/passwd", rel / "SChernykh" / f"{package}-build.assert.sig.tmp")
    sig = rel / "lobster-kerouac" / f"{package}-build.assert.sig"
    sig.unlink()
    os.symlink("/dev/zero", sig)
    # Entries leading to a file outside, or back to the release directory.
    os.symlink("/etc/passwd", rel / "passwd")
    os.symlink(".", rel / "loop")
    # A symlink that stays inside the tree is followed.
    os.symlink("scoobybejesus", rel / "scooby-alias")
    code, out, _ = _run(keys, sigs, capsys, monkeypatch, "--no-markup")
    assert code == 1
    lines = verdict_lines(out)
    assert "linkdir: REFUSED" in lines
    assert "linkfile: REFUSED" in lines
    assert "lobster-kerouac: REFUSED" in lines
    assert "scooby-alias: OK" in lines
    assert "passwd: REFUSED" in lines and "loop: REFUSED" in lines
    assert out.count("symlink leading out of the signature tree") == 4
    assert "symlink leading back to the top of the signature tree" in out
    assert "root:" not in out  # /etc/passwd was never read
    assert "not followed" in out
    assert _ok_count(out) == 5  # 4 untouched + the alias


def test_special_files_do_not_hang(
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sigs, rel, package = _tree(tmp_path)
    d = rel / "fifo"
    d.mkdir()
    os.mkfifo(d / f"{package}-build.assert")
    (d / f"{package}-build.assert.sig").write_bytes(b"x")
    d = rel / "dir"
    (d / f"{package}-build.assert").mkdir(parents=True)
    (d / f"{package}-build.assert.sig").write_bytes(b"x")
    code, out, _ = _run(keys, sigs, capsys, monkeypatch, "--no-markup")
    assert code == 1
    lines = verdict_lines(out)
    assert "fifo: REFUSED" in lines and "dir: REFUSED" in lines
    assert "not a regular file" in out
    assert _ok_count(out) == 5


def test_control_characters_in_names_are_never_printed_raw(
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sigs, rel, package = _tree(tmp_path)
    src = rel / "jeffro256"
    names: list[str | bytes] = [
        "evil\x1b]0;owned\x07",
        "red\x1b[31mtext",
        "new\nline",
        "bidi\u202eevil",
        b"bad\xffbyte",
    ]
    for name in names:
        d = os.path.join(os.fsencode(rel), os.fsencode(name))
        os.mkdir(d)
        for f in src.iterdir():
            Path(os.fsdecode(d), f.name).write_bytes(f.read_bytes())
    # One without a signature, so its name appears in a path line too.
    os.mkdir(os.path.join(os.fsencode(rel), b"nosig\x1b[2J"))
    Path(
        os.fsdecode(os.path.join(os.fsencode(rel), b"nosig\x1b[2J")), f"{package}-build.assert"
    ).write_bytes(b"x")
    code, out, err = _run(keys, sigs, capsys, monkeypatch)
    assert _only_our_escapes(out) and "\x1b" not in err
    assert "\x07" not in out and "\u202e" not in out
    assert "evil\\x1b]0;owned\\x07: OK" in out
    assert "new\\x0aline: OK" in out
    assert "bad\\xffbyte: OK" in out
    assert "missing signature at" in out and "nosig\\x1b[2J" in out
    assert code == 1  # the unsigned one
    code, out, _ = _run(keys, sigs, capsys, monkeypatch, "--json")
    doc = json.loads(out)
    assert "\x1b" not in out
    assert any(s["signer"] == "evil\x1b]0;owned\x07" for s in doc["signers"])


def test_wrong_signatures(
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sigs, rel, package = _tree(tmp_path)
    name = f"{package}-build.assert"
    # Trent and Mallory are both trusted, each for their own directory.
    for who, fpr in (("trent", keys.trent), ("mallory", keys.mallory)):
        d = rel / who
        d.mkdir()
        (d / name).write_bytes((rel / "jeffro256" / name).read_bytes())
        keys.sign(d / name, fpr)
    # ... but Mallory also signs Trent's assert: a signature by another trusted signer's key.
    keys.sign(rel / "trent" / name, keys.mallory)
    # A signature over another file.
    other = tmp_path / "other.txt"
    other.write_text("something else\n")
    keys.sign(other, keys.mallory, out=rel / "SChernykh" / (name + ".sig"))
    # A truncated signature.
    s = rel / "scoobybejesus" / (name + ".sig")
    s.write_bytes(s.read_bytes()[:-20])
    # A complete signed message (its own literal data) posing as a detached signature.
    subprocess.run(
        [
            "gpg",
            "--batch",
            "--homedir",
            str(keys.signer_home),
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--local-user",
            keys.mallory,
            "--yes",
            "--sign",
            "--output",
            str(rel / "MoneroArbo" / (name + ".sig")),
            str(rel / "MoneroArbo" / name),
        ],
        check=True,
        capture_output=True,
    )
    trusted = tmp_path / "trusted.txt"
    trusted.write_text(
        Path(release_args(WHICH)[-1])
        .parents[1]
        .joinpath("keys/monero/signer-keyids.txt")
        .read_text()
        + f"trent 0 {keys.trent}\nmallory 0 {keys.mallory}\n"
    )
    code, out, _ = _run(
        keys, sigs, capsys, monkeypatch, "--no-markup", "--trusted-keys", str(trusted)
    )
    assert code == 1
    lines = verdict_lines(out)
    assert "trent: WRONG KEY" in lines
    assert "mallory: OK" in lines
    assert "SChernykh: BAD SIGNATURE" in lines
    assert "scoobybejesus: BAD SIGNATURE" in lines
    assert "MoneroArbo: BAD SIGNATURE" in lines
    assert "jeffro256: OK" in lines and "lobster-kerouac: OK" in lines


def test_many_hostile_signers_at_once_still_judges_the_rest(
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sigs, rel, package = _tree(tmp_path)
    for i in range(20):
        _add_signer(rel, f"junk{i:02d}", package, b"%d\n" % i)
        (rel / f"junk{i:02d}" / f"{package}-build.assert.sig").write_bytes(os.urandom(i * 7))
    code, out, _ = _run(keys, sigs, capsys, monkeypatch, "--no-markup", "--min-ok", "5")
    assert code == 0, out  # 5 distinct keys OK, the junk is reported and tolerated
    assert sum(line.endswith("BAD SIGNATURE") for line in verdict_lines(out)) == 20
