"""gverify against the real signature trees in tests/data/compat, and changed copies."""
# ruff: noqa: F811

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gverify_fixtures import (
    COMPAT,
    Keys,
    copy_release,
    descriptor,
    expected_output,
    keys,  # noqa: F401 - fixture
    release_args,
    run_gverify,
    verdict_lines,
)

MONERO_LINUX_SIGNERS = [
    "4rkal",
    "SChernykh",
    "hyc",
    "jeffro256",
    "jtgrassie",
    "kevcrumb",
    "lobster-kerouac",
    "recanman",
    "refactor-ring",
    "scoobybejesus",
    "tobtoht",
]
BITCOIN_OK = [
    "achow101",
    "emzy",
    "fanquake",
    "guggero",
    "hebasto",
    "kristapsk",
    "laanwj",
    "sipsorcery",
]
# luke-jr signed 0.21.2 in 2021 with a key that, in every public copy of it
# (tests/data/compat/keys/bitcoin, the gitian-keys histories), expired in 2017:
# the classic tool said OK, gverify says BAD SIGNATURE (issue 10 item 4).
LATE = "luke-jr"
BITCOIN_BAD = {"jonatack", LATE}


def _blocks(expected: bytes) -> list[bytes]:
    return [b + b"\n\n" for b in expected.split(b"\n\n") if b.strip()]


# --------------------------------------------------------------------------
# the real trees


@pytest.mark.parametrize("which", ["monero-linux", "monero-win", "monero-osx"])
def test_monero_releases_all_ok(
    which: str, keys: Keys, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    r = run_gverify(["--markup", "-v", *release_args(which)], capsys, monkeypatch, keys.home)
    assert r.code == 0, r.out + r.err
    # Every classic block (gpg's lines, the bold verdict, the blank line) is
    # in our output byte for byte; only their order (sorted) differs.
    for block in _blocks(expected_output(which)):
        assert block.decode() in r.out, block
    assert "Verified." in r.out


def test_bitcoin_nine_ok_and_jonatack_bad_signature(
    keys: Keys, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    r = run_gverify(["--markup", "-v", *release_args("bitcoin")], capsys, monkeypatch, keys.home)
    assert r.code == 1, r.out + r.err
    for block in _blocks(expected_output("bitcoin")):
        if f"{LATE}: OK" not in block.decode():
            assert block.decode() in r.out, block
    assert "\x1b[1mjonatack: BAD SIGNATURE\x1b[0m\n\n" in r.out
    plain = run_gverify(["--no-markup", *release_args("bitcoin")], capsys, monkeypatch)
    assert verdict_lines(plain.out) == [
        f"{s}: {'BAD SIGNATURE' if s in BITCOIN_BAD else 'OK'}"
        for s in sorted([*BITCOIN_OK, *BITCOIN_BAD])
    ]
    assert (
        "gverify: signature made on 2021-10-09, after its key "
        "E463A93F5F3117EEDE6C7316BD02942421F4889F expired on 2017-06-09 "
    ) in plain.out
    assert "newer key)\nluke-jr: BAD SIGNATURE\n" in plain.out
    assert "\x1b" not in plain.out


def test_signers_sorted_and_summary(
    keys: Keys, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    r = run_gverify(["--no-markup", *release_args("monero-linux")], capsys, monkeypatch, keys.home)
    assert verdict_lines(r.out) == [f"{s}: OK" for s in sorted(MONERO_LINUX_SIGNERS)]
    summary = r.out[r.out.index("Summary for") :]
    assert "11 signers, 11 OK" in summary
    assert "11 agree on out_manifest" in summary and "(the reference)" in summary


def test_import_keys_and_keyring_options(
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    empty = tmp_path / "empty-home"
    empty.mkdir(mode=0o700)
    r = run_gverify(
        ["--import-keys", str(COMPAT / "keys" / "monero"), *release_args("monero-win")],
        capsys,
        monkeypatch,
        empty,
    )
    assert r.code == 0, r.out + r.err
    r = run_gverify(
        ["--keyring", str(keys.home / "pubring.kbx"), *release_args("monero-osx")],
        capsys,
        monkeypatch,
        empty,
    )
    assert r.code == 0, r.out + r.err
    # Neither wrote anything into the (empty) GNUPGHOME.
    assert list(empty.iterdir()) == []
    # And without any keys: a usage error, not a crash, nothing created.
    r = run_gverify(release_args("monero-osx"), capsys, monkeypatch, empty)
    assert r.code == 2 and "no public keys" in r.err
    assert list(empty.iterdir()) == []


# --------------------------------------------------------------------------
# changed copies


def test_flipped_byte_is_bad_signature(
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sigs, rel, package, _ = copy_release("monero-linux", tmp_path)
    target = rel / "hyc" / f"{package}-build.assert"
    data = bytearray(target.read_bytes())
    data[200] ^= 0x01
    target.write_bytes(bytes(data))
    r = run_gverify(
        ["--no-markup", "-v", *release_args("monero-linux", sigs)], capsys, monkeypatch, keys.home
    )
    assert r.code == 1
    assert verdict_lines(r.out) == [
        f"{s}: {'BAD SIGNATURE' if s == 'hyc' else 'OK'}" for s in sorted(MONERO_LINUX_SIGNERS)
    ]
    assert 'gpg: BAD signature from "Howard Chu' in r.out


def test_swapped_and_missing_signatures(
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sigs, rel, package, release = copy_release("monero-linux", tmp_path)
    name = f"{package}-build.assert.sig"
    a, b = rel / "hyc" / name, rel / "tobtoht" / name
    sa, sb = a.read_bytes(), b.read_bytes()
    a.write_bytes(sb)
    b.write_bytes(sa)
    (rel / "4rkal" / name).unlink()
    (rel / "kevcrumb" / f"{package}-build.assert").unlink()
    r = run_gverify(
        ["--no-markup", *release_args("monero-linux", sigs)], capsys, monkeypatch, keys.home
    )
    assert r.code == 1
    lines = verdict_lines(r.out)
    assert lines[0] == f"missing signature at {rel / '4rkal' / name}"
    assert "hyc: BAD SIGNATURE" in lines and "tobtoht: BAD SIGNATURE" in lines
    assert f"missing result at {rel / 'kevcrumb' / (package + '-build.assert')}" in lines
    assert sum(line.endswith(": OK") for line in lines) == 7


def _resign_changed(keys: Keys, rel: Path, package: str, signer: str, who: str) -> None:
    """Change one file's hash in signer's out_manifest and re-sign it with ``who``'s key."""
    path = rel / signer / f"{package}-build.assert"
    text = path.read_text()
    first = text.index("- out_manifest: |\n") + len("- out_manifest: |\n    ")
    old = text[first : first + 64]
    path.write_text(text[:first] + "0" * 64 + text[first + 64 :])
    assert old != "0" * 64
    keys.sign(path, who)


def test_resigned_changed_manifest_is_mismatch_with_details(
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sigs, rel, package, _ = copy_release("monero-linux", tmp_path)
    _resign_changed(keys, rel, package, "tobtoht", keys.mallory)
    r = run_gverify(
        ["--no-markup", "-v", *release_args("monero-linux", sigs)], capsys, monkeypatch, keys.home
    )
    assert r.code == 1
    assert "tobtoht: MISMATCH" in verdict_lines(r.out)
    assert "  changed hash:  monero-aarch64-linux-gnu-v0.18.3.1.tar.bz2" in r.out
    assert "- 445032e88dc07e51" in r.out and "+ 0000000000000000" in r.out
    summary = r.out[r.out.index("Summary for") :]
    assert "10 agree on out_manifest" in summary
    assert "1 agrees on out_manifest" in summary
    assert summary.index("10 agree") < summary.index("1 agrees")


def test_trusted_keys_wrong_key(
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sigs, rel, package, _ = copy_release("monero-linux", tmp_path)
    _resign_changed(keys, rel, package, "tobtoht", keys.mallory)
    trusted = COMPAT / "keys" / "monero" / "signer-keyids.txt"
    r = run_gverify(
        ["--no-markup", "--trusted-keys", str(trusted), *release_args("monero-linux", sigs)],
        capsys,
        monkeypatch,
        keys.home,
    )
    assert r.code == 1
    lines = verdict_lines(r.out)
    assert "tobtoht: WRONG KEY" in lines
    assert sum(line.endswith(": OK") for line in lines) == 10
    assert f"good signature by key {keys.mallory}" in r.out


def test_signature_by_another_trusted_signers_key(
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sigs, rel, package, _ = copy_release("monero-win", tmp_path)
    # Mallory is trusted as "mallory"; she signs jeffro256's (unchanged) assert.
    keys.sign(rel / "jeffro256" / f"{package}-build.assert", keys.mallory)
    trusted = tmp_path / "trusted.txt"
    trusted.write_text(
        (COMPAT / "keys" / "monero" / "signer-keyids.txt").read_text()
        + f"mallory 0000000000000000 {keys.mallory}\n"
    )
    r = run_gverify(
        ["--no-markup", "--trusted-keys", str(trusted), *release_args("monero-win", sigs)],
        capsys,
        monkeypatch,
        keys.home,
    )
    assert r.code == 1
    assert "jeffro256: WRONG KEY" in verdict_lines(r.out)
    assert "bound to mallory" in r.out
    # Without bindings it is the classic OK (the manifest is unchanged).
    r = run_gverify(["--no-markup", *release_args("monero-win", sigs)], capsys, monkeypatch)
    assert r.code == 0


def test_trusted_keys_subkeys_and_bitcoin_keys_txt(
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # signer-keyids.txt names signing subkeys for fanquake, laanwj, emzy, guggero.
    r = run_gverify(
        [
            "--no-markup",
            "--trusted-keys",
            str(COMPAT / "keys" / "bitcoin" / "signer-keyids.txt"),
            *release_args("bitcoin"),
        ],
        capsys,
        monkeypatch,
        keys.home,
    )
    assert [line for line in verdict_lines(r.out) if line.endswith(": OK")] == [
        f"{s}: OK" for s in BITCOIN_OK
    ]
    # keys.txt style, "FINGERPRINT Full Name (handle)", with primary fingerprints.
    keys_txt = tmp_path / "keys.txt"
    keys_txt.write_text(
        "E777299FC265DD04793070EB944D35F9AC3DB76A Michael Ford (fanquake)\n"
        "9EDAFF80E080659604F4A76B2EBB056FD847F8A7 Stephan Oeste (Emzy)\n"
        "152812300785C96444D3334D17565732E08E5E41 Andrew Chow (achow101)\n"
    )
    sigs, rel, _, _ = copy_release("bitcoin", tmp_path / "copy")
    for d in rel.iterdir():
        if d.name not in ("fanquake", "emzy", "achow101"):
            for f in d.iterdir():
                f.unlink()
            d.rmdir()
    r = run_gverify(
        ["--no-markup", "--trusted-keys", str(keys_txt), *release_args("bitcoin", sigs)],
        capsys,
        monkeypatch,
        keys.home,
    )
    assert r.code == 0, r.out
    assert verdict_lines(r.out) == ["achow101: OK", "emzy: OK", "fanquake: OK"]


def test_min_ok(
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = keys.home
    r = run_gverify(["--min-ok", "8", *release_args("bitcoin")], capsys, monkeypatch, home)
    assert r.code == 0, r.out
    assert "jonatack: BAD SIGNATURE" in r.out  # reported, tolerated
    r = run_gverify(["--min-ok", "9", *release_args("bitcoin")], capsys, monkeypatch)
    assert r.code == 1
    # Distinct keys: the same key signing for two directories counts once.
    sigs, rel, package, _ = copy_release("monero-win", tmp_path)
    twin = rel / "twin"
    twin.mkdir()
    for f in (rel / "jeffro256").iterdir():
        (twin / f.name).write_bytes(f.read_bytes())
    r = run_gverify(["--min-ok", "6", *release_args("monero-win", sigs)], capsys, monkeypatch)
    assert r.code == 1, r.out
    r = run_gverify(["--min-ok", "5", *release_args("monero-win", sigs)], capsys, monkeypatch)
    assert r.code == 0, r.out
    # A MISMATCH is never tolerated.
    _resign_changed(keys, rel, package, "SChernykh", keys.trent)
    r = run_gverify(["--min-ok", "1", *release_args("monero-win", sigs)], capsys, monkeypatch)
    assert r.code == 1


def test_compare_to(
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sigs, rel, package, _ = copy_release("monero-win", tmp_path)
    _resign_changed(keys, rel, package, "MoneroArbo", keys.mallory)
    # Sorted, MoneroArbo comes first, but it is not the reference by default
    # only if -c says so; here the first verified signer is MoneroArbo.
    r = run_gverify(
        ["--no-markup", *release_args("monero-win", sigs)], capsys, monkeypatch, keys.home
    )
    assert "MoneroArbo: OK" in r.out
    assert sum(line.endswith("MISMATCH") for line in verdict_lines(r.out)) == 4
    r = run_gverify(
        ["--no-markup", "-c", "jeffro256", *release_args("monero-win", sigs)], capsys, monkeypatch
    )
    assert verdict_lines(r.out)[0] == "MoneroArbo: MISMATCH"
    assert sum(line.endswith(": OK") for line in verdict_lines(r.out)) == 4
    r = run_gverify(["-c", "nobody", *release_args("monero-win", sigs)], capsys, monkeypatch)
    assert r.code == 2 and "no signer 'nobody'" in r.err


def test_json_report(
    keys: Keys, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    r = run_gverify(["--json", *release_args("bitcoin")], capsys, monkeypatch, keys.home)
    assert r.code == 1
    doc = json.loads(r.out)
    assert doc["verified"] is False and doc["exit_code"] == 1
    by = {s["signer"]: s for s in doc["signers"]}
    assert by["jonatack"]["verdict"] == "BAD SIGNATURE"
    assert by["jonatack"]["gpg"]["signatures"][0]["error_code"] == "9"
    fan = by["fanquake"]["gpg"]["signatures"][0]
    assert fan["fingerprint"] == "CFB16E21C950F67FA95E558F2EEB9F5CC09526C1"
    assert fan["primary_fingerprint"] == "E777299FC265DD04793070EB944D35F9AC3DB76A"
    assert doc["groups"][0]["signers"] == BITCOIN_OK


def test_usage_errors_exit_2(
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    desc = str(descriptor("monero-win"))
    home = keys.home
    r = run_gverify(["-d", str(tmp_path), "-r", "v1", desc], capsys, monkeypatch, home)
    assert r.code == 2 and "does not exist" in r.err
    r = run_gverify(["-r", "../x", desc], capsys, monkeypatch)
    assert r.code == 2
    r = run_gverify([str(tmp_path / "none.yml")], capsys, monkeypatch)
    assert r.code == 2
    r = run_gverify(["--min-ok", "0", desc], capsys, monkeypatch)
    assert r.code == 2
    r = run_gverify(["--trusted-keys", str(tmp_path / "missing.txt"), desc], capsys, monkeypatch)
    assert r.code == 2


def test_empty_release_fails(
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "sigs" / "v9").mkdir(parents=True)
    r = run_gverify(
        ["-d", str(tmp_path / "sigs"), "-r", "v9", str(descriptor("monero-win"))],
        capsys,
        monkeypatch,
        keys.home,
    )
    assert r.code == 1 and "no signer directories" in r.out


def test_never_asks_a_keyserver(
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil
    import subprocess

    home = tmp_path / "home"
    shutil.copytree(keys.home, home, ignore=shutil.ignore_patterns("S.*"))
    # A home that asks for keys to be fetched, from a keyserver that would hang.
    (home / "gpg.conf").write_text(
        "keyserver hkp://127.0.0.1:9\nauto-key-retrieve\nauto-key-locate keyserver\n"
    )
    r = run_gverify(["--no-markup", *release_args("bitcoin")], capsys, monkeypatch, home)
    assert r.code == 1
    assert "jonatack: BAD SIGNATURE" in verdict_lines(r.out)
    assert not any(p.name.startswith("S.dirmngr") for p in home.iterdir())
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not any("dirmngr" in line and str(home) in line for line in ps.splitlines())


# --------------------------------------------------------------------------
# pieces


def test_trusted_keys_formats() -> None:
    from gitian.errors import InputError
    from gitian.trust import TrustedKeys

    fpr_a, fpr_b = "A" * 40, "b" * 40
    t = TrustedKeys.parse(
        "# comment\n\n"
        f"alice 0123456789ABCDEF {fpr_a}\n"
        f"{fpr_b} Bob Builder (BobB)\n"
        f"carol 0x{fpr_a}\n",
        "t.txt",
    )
    assert t.keys_for("alice") == {fpr_a}
    assert t.keys_for("bobb") == {fpr_b.upper()}  # the handle, case-insensitive
    # Only the handle binds: not the whole name, nor any word of it.
    assert t.keys_for("Bob Builder (BobB)") == set() and t.keys_for("Bob") == set()
    assert t.keys_for("carol") == {fpr_a}
    assert t.owners_of([fpr_a]) == ["alice", "carol"]
    for bad in ("alice 123 456\n", f"{fpr_a}\n", "", "just words here\n"):
        with pytest.raises(InputError):
            TrustedKeys.parse(bad, "t.txt")


def test_printable_escapes_everything_that_could_drive_a_terminal() -> None:
    from gitian.verify import printable

    assert printable("plain-name_1.0 é") == "plain-name_1.0 é"
    assert printable("a\x1b[31mb") == "a\\x1b[31mb"
    assert printable("x\ny\tz\x7f\x85") == "x\\x0ay\\x09z\\x7f\\x85"
    assert printable("bidi\u202eevil\u2028") == "bidi\\u202eevil\\u2028"
    assert printable(b"bad\xffbyte".decode("utf-8", "surrogateescape")) == "bad\\xffbyte"


def test_differences_lists_files() -> None:
    from gitian.verify import SignerResult, differences

    ref = "aa  one\nbb  two\ncc  three\n"
    s = SignerResult("x", Path("a"), Path("b"))
    s.out_manifest = "aa  one\nzz  two\ndd  four\n"
    s.release, s.package = "r1", "pkg"
    d = differences(ref, s, "r2", "pkg")
    assert d.changed == ("two",)
    assert d.only_in_reference == ("three",)
    assert d.only_in_signer == ("four",)
    assert d.release == ("r1", "r2") and d.name is None
    assert d.lines == (("bb  two", "zz  two"), ("cc  three", "dd  four"))


def test_compare_to_signer_that_fails_is_not_the_reference(
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sigs, rel, package, _ = copy_release("monero-win", tmp_path)
    target = rel / "jeffro256" / f"{package}-build.assert"
    target.write_bytes(target.read_bytes().replace(b"v0.18.3.4", b"v0.18.3.5", 1))
    r = run_gverify(
        ["--no-markup", "-c", "jeffro256", *release_args("monero-win", sigs)],
        capsys,
        monkeypatch,
        keys.home,
    )
    assert r.code == 1
    assert "jeffro256: BAD SIGNATURE" in verdict_lines(r.out)
    assert sum(line.endswith(": OK") for line in verdict_lines(r.out)) == 4
    assert "the --compare-to signer jeffro256 could not be verified" in r.out
    assert "the reference is MoneroArbo" in r.out
