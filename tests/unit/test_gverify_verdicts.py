"""Verdicts that say what happened (issue 10 items 4-5, issue 14 item 5)."""
# ruff: noqa: F811

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gverify_fixtures import (
    COMPAT,
    Keys,
    console,
    copy_release,
    descriptor,
    gen_key,
    gpg_in,
    keys,  # noqa: F401 - fixture
    release_args,
    revocation,
    run_gverify,
    verdict_lines,
)
from testdata import DATA

from gitian import verify
from gitian.errors import InputError
from gitian.trust import TrustedKeys

KEYS_2020 = DATA / "keys-txt" / "gitian-keys-2020.txt"  # Bitcoin's, mostly without handles
KEYS_2022 = DATA / "keys-txt" / "builder-keys-2022.txt"  # every line with a handle


# --------------------------------------------------------------------------
# Bitcoin's keys.txt


def test_keys_txt_handles_bind_and_names_do_not() -> None:
    old = TrustedKeys.load(KEYS_2020)
    # "(Emzy)", "(sipsorcery)": handles, matched case-insensitively.
    assert old.keys_for("emzy") == {"9EDAFF80E080659604F4A76B2EBB056FD847F8A7"}
    assert old.keys_for("sipsorcery") == {"9D3CC86A72F8494342EA5FD10A41BDC3F4FAFF1C"}
    # No handle: trusted, bound to no directory, neither by the name nor its words.
    for word in ("Michael Ford", "Michael", "Ford", "fanquake", "Michagogo", "centaur"):
        assert old.keys_for(word) == frozenset(), word
    assert old.name_of(["E777299FC265DD04793070EB944D35F9AC3DB76A"]) == "Michael Ford"
    # "(Location: Leuven, Belgium)" is not a handle.
    assert old.keys_for("Location: Leuven") == frozenset()
    assert old.name_of(["D762373D24904A3E42F33B08B9A408E71DAAC974"]) == (
        "Pieter Wuille (Location: Leuven, Belgium)"
    )
    new = TrustedKeys.load(KEYS_2022)
    assert new.keys_for("guggero") == {"F4FC70F07310028424EFC20A8E4256593F177720"}  # (guggero, …)
    assert new.keys_for("sipa") >= {"D762373D24904A3E42F33B08B9A408E71DAAC974"}
    assert len(new.keys_for("Emzy")) == 2 and not new.unbound
    assert new.keys_for("Oliver Gugger") == frozenset()


def test_keys_txt_lines_that_are_refused(tmp_path: Path) -> None:
    for bad in ("A" * 40 + "\n", "alice 123 456\n", "../x 0 " + "A" * 40 + "\n", "# only\n"):
        with pytest.raises(InputError):
            TrustedKeys.parse(bad, "t.txt")


@pytest.mark.parametrize(
    ("keys_txt", "expected"),
    [
        (
            KEYS_2022,
            {
                "achow101": "OK",
                "emzy": "OK",
                "fanquake": "OK",
                "guggero": "OK",
                "hebasto": "OK",
                "kristapsk": "OK",
                "laanwj": "OK",
                "sipsorcery": "OK",
            },
        ),
        (
            KEYS_2020,
            {
                "achow101": "OK, signed by Andrew Chow",
                "emzy": "OK",
                "fanquake": "OK, signed by Michael Ford",
                "guggero": "WRONG KEY",  # not in the 2020 file
                "hebasto": "OK",
                "kristapsk": "WRONG KEY",
                "laanwj": "OK, signed by Wladimir J. van der Laan",
                "sipsorcery": "OK",
            },
        ),
    ],
)
def test_bitcoin_release_with_real_keys_txt(
    keys: Keys,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    keys_txt: Path,
    expected: dict[str, str],
) -> None:
    r = run_gverify(
        ["--trusted-keys", str(keys_txt), *release_args("bitcoin")], capsys, monkeypatch, keys.home
    )
    expected = {**expected, "jonatack": "BAD SIGNATURE", "luke-jr": "BAD SIGNATURE"}
    assert verdict_lines(r.out) == [f"{s}: {v}" for s, v in sorted(expected.items())], r.out
    assert r.code == 1


def test_unbound_trusted_key_cannot_sign_for_a_bound_signer(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sigs, rel, package, _ = copy_release("monero-win", tmp_path)
    keys.sign(rel / "jeffro256" / f"{package}-build.assert", keys.mallory)
    trusted = tmp_path / "keys.txt"
    trusted.write_text(
        (COMPAT / "keys" / "monero" / "signer-keyids.txt").read_text()
        + f"{keys.mallory} Mallory Evil\n"
    )
    r = run_gverify(
        ["--trusted-keys", str(trusted), *release_args("monero-win", sigs)],
        capsys,
        monkeypatch,
        keys.home,
    )
    assert "jeffro256: WRONG KEY" in verdict_lines(r.out)
    # In a directory nobody is bound to, the same key is trusted by its name.
    (rel / "newcomer").mkdir()
    for f in (rel / "jeffro256").iterdir():
        (rel / "newcomer" / f.name).write_bytes(f.read_bytes())
    r = run_gverify(
        ["--trusted-keys", str(trusted), *release_args("monero-win", sigs)],
        capsys,
        monkeypatch,
        keys.home,
    )
    assert "newcomer: OK, signed by Mallory Evil" in verdict_lines(r.out)


# --------------------------------------------------------------------------
# expired and revoked keys


def test_signature_after_expiry_is_bad_before_is_ok(
    keys: Keys, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    r = run_gverify(["--json", *release_args("bitcoin")], capsys, monkeypatch, keys.home)
    by = {s["signer"]: s for s in json.loads(r.out)["signers"]}
    # gpg says EXPKEYSIG for both; the key's expiry tells them apart.
    for who in ("emzy", "guggero", "luke-jr"):
        assert by[who]["gpg"]["signatures"][0]["status"] == "EXPKEYSIG"
        assert by[who]["gpg"]["good"] is True
    assert by["emzy"]["verdict"] == by["guggero"]["verdict"] == "OK"
    assert by["luke-jr"]["verdict"] == "BAD SIGNATURE"
    assert "after its key" in by["luke-jr"]["reason"]


def test_revoked_key_is_ok_flagged_and_not_counted(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    shutil.copytree(keys.home, home, ignore=shutil.ignore_patterns("S.*"))
    secret = tmp_path / "s"
    secret.mkdir(mode=0o700)
    try:
        gen_key(secret, "Rev <rev@example.org>")
        sigs, rel, package, _ = copy_release("monero-win", tmp_path / "t")
        (rel / "rev").mkdir()
        data = rel / "rev" / f"{package}-build.assert"
        data.write_bytes((rel / "jeffro256" / data.name).read_bytes())
        gpg_in(secret, "-u", "rev@example.org", "--detach-sign", "-o", f"{data}.sig", str(data))
        gpg_in(home, "--import", stdin=gpg_in(secret, "--export", "rev@example.org"))
        gpg_in(home, "--import", stdin=revocation(secret, "rev@example.org", "leaked"))
    finally:
        subprocess.run(["gpgconf", "--homedir", str(secret), "--kill", "all"], capture_output=True)
    r = run_gverify(["--no-markup", *release_args("monero-win", sigs)], capsys, monkeypatch, home)
    assert r.code == 0, r.out  # OK as in the classic tool ...
    assert "rev: OK" in verdict_lines(r.out)
    assert "gverify: note: made by a key that has been revoked" in r.out  # ... but flagged
    assert "1 OK by a revoked key: rev" in r.out
    # and not counted: 5 distinct unrevoked keys, not 6.
    r = run_gverify(["--min-ok", "6", *release_args("monero-win", sigs)], capsys, monkeypatch)
    assert r.code == 1
    r = run_gverify(["--min-ok", "5", *release_args("monero-win", sigs)], capsys, monkeypatch)
    assert r.code == 0


# --------------------------------------------------------------------------
# MISMATCH, output, inputs


def test_mismatch_is_never_counted_among_those_that_agree(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sigs, rel, package, _ = copy_release("monero-win", tmp_path)
    # Same out_manifest, but another release named in the assert.
    target = rel / "SChernykh" / f"{package}-build.assert"
    target.write_bytes(target.read_bytes().replace(b"release: v0.18.3.4-win", b"release: v0.1"))
    keys.sign(target, keys.mallory)
    r = run_gverify(
        ["--no-markup", *release_args("monero-win", sigs)], capsys, monkeypatch, keys.home
    )
    assert "SChernykh: MISMATCH" in verdict_lines(r.out)
    summary = r.out[r.out.index("Summary for") :]
    assert (
        "4 agree on out_manifest" in summary and "(the reference): MoneroArbo, jeffro256" in summary
    )
    assert "1 agrees on out_manifest" in summary
    assert "release 'v0.1' (MISMATCH): SChernykh" in summary
    assert "5 agree" not in summary


def test_default_output_is_for_people(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    r = run_gverify(release_args("bitcoin"), capsys, monkeypatch, keys.home)
    assert "\x1b" not in r.out  # not a terminal
    assert "gpg:" not in r.out and "Primary key fingerprint" not in r.out
    assert "gverify: no public key for key 796C4109063D4EAF in the keyring\njonatack:" in r.out
    r = run_gverify(["-v", *release_args("bitcoin")], capsys, monkeypatch)
    assert "gpg: WARNING: This key is not certified" in r.out
    assert "gpg: Signature made" not in r.out
    r = run_gverify(["-vv", *release_args("bitcoin")], capsys, monkeypatch)
    assert "gpg: Signature made" in r.out and "gpg: Good signature" in r.out
    r = run_gverify(["--markup", *release_args("bitcoin")], capsys, monkeypatch)
    assert "\x1b[1mfanquake: OK\x1b[0m" in r.out


def _console(args: list[str], env: dict[str, str], stdout: int) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "from gitian.cli.gverify import main; main()", *args],
        env=env,
        stdout=stdout,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )
    return proc.returncode


def test_bold_only_on_a_terminal(keys: Keys, tmp_path: Path) -> None:
    env = {**os.environ, "GNUPGHOME": str(keys.home)}
    args = release_args("monero-win")
    with open(tmp_path / "out", "wb") as f:
        assert _console(args, env, f.fileno()) == 0
    assert b"\x1b" not in (tmp_path / "out").read_bytes()
    code, seen = console(args, env, terminal="stdout")
    assert code == 0
    assert b"\x1b[1mjeffro256: OK\x1b[0m" in seen
    with open(tmp_path / "out", "wb") as f:
        assert _console(["--markup", *args], env, f.fileno()) == 0
    assert b"\x1b[1mjeffro256: OK\x1b[0m" in (tmp_path / "out").read_bytes()


def test_missing_release_lists_the_releases_there_are(
    keys: Keys, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = release_args("monero-win")
    args[args.index("-r") + 1] = "current"
    r = run_gverify(args, capsys, monkeypatch, keys.home)
    assert r.code == 2
    assert "current does not exist" in r.err
    assert "hint: releases in" in r.err and "v0.18.3.4-win" in r.err


def test_keyring_pointed_at_an_armored_key(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    armored = COMPAT / "keys" / "monero" / "MoneroArbo.asc"
    r = run_gverify(["--keyring", str(armored), *release_args("monero-win")], capsys, monkeypatch)
    assert r.code == 2 and "armored key file" in r.err and "--import-keys" in r.err
    # --import-keys takes a file as well as a directory.
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o700)
    r = run_gverify(
        ["--no-markup", "--import-keys", str(armored), *release_args("monero-win")],
        capsys,
        monkeypatch,
        empty,
    )
    assert sum(line.endswith(": OK") for line in verdict_lines(r.out)) == 1


def test_a_descriptor_with_only_a_name_is_enough(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    desc = tmp_path / "name-only.yml"
    desc.write_text("---\nname: monero-win-0.18\n")
    args = release_args("monero-win")
    r = run_gverify([*args[:-1], str(desc)], capsys, monkeypatch, keys.home)
    assert r.code == 0, r.err
    desc.write_text("name: ../x\n")
    r = run_gverify([*args[:-1], str(desc)], capsys, monkeypatch)
    assert r.code == 2 and "not sanitary" in r.err
    desc.write_text("suites: [x]\n")
    r = run_gverify([*args[:-1], str(desc)], capsys, monkeypatch)
    assert r.code == 2 and "missing required key 'name'" in r.err
    assert descriptor("monero-win").is_file()


# --------------------------------------------------------------------------
# hostile trees


def test_symlink_loops_and_dangling_links_are_refused(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sigs, rel, package, _ = copy_release("monero-win", tmp_path)
    os.symlink("loop-b", rel / "loop-a")
    os.symlink("loop-a", rel / "loop-b")
    os.symlink("self", rel / "self")
    os.symlink("nowhere", rel / "dangling")
    os.symlink("loop", rel / "jeffro256" / "loop")
    (rel / "jeffro256" / f"{package}-build.assert.sig").unlink()
    os.symlink("loop", rel / "jeffro256" / f"{package}-build.assert.sig")
    r = run_gverify(
        ["--no-markup", *release_args("monero-win", sigs)], capsys, monkeypatch, keys.home
    )
    lines = verdict_lines(r.out)
    for who in ("loop-a", "loop-b", "self", "dangling", "jeffro256"):
        assert f"{who}: REFUSED" in lines, r.out
    assert "symlink that cannot be followed" in r.out and "symlink to nothing" in r.out
    assert sum(line.endswith(": OK") for line in lines) == 4


def test_nothing_is_opened_before_lstat_says_it_is_a_regular_file(
    keys: Keys, tmp_path: Path
) -> None:
    """A FIFO (or a device) where the assert should be, or a link to one inside
    the tree, is refused without being opened."""
    sigs, rel, package, _ = copy_release("monero-win", tmp_path)
    name = f"{package}-build.assert"
    fifo = rel / "SChernykh" / "fifo"
    os.mkfifo(fifo)
    (rel / "SChernykh" / name).unlink()
    os.symlink("fifo", rel / "SChernykh" / name)
    (rel / "jeffro256" / name).unlink()
    os.mkfifo(rel / "jeffro256" / name)
    opened: list[str] = []
    watching = [True]

    def hook(event: str, args: tuple[object, ...]) -> None:
        # An audit hook cannot be removed: it stops recording after this test.
        if watching[0] and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            opened.append(os.fsdecode(args[0]))

    sys.addaudithook(hook)
    from gitian.gpg import Keyring

    report = verify.verify_release(str(rel), package, rel.name, keyring=Keyring(home=keys.home))
    watching[0] = False
    seen = list(opened)
    assert not any(
        p.endswith(("fifo", name)) and ("SChernykh" in p or "jeffro256" in p) for p in seen
    ), seen
    by = {s.name: s for s in report.signers}
    assert by["SChernykh"].verdict is by["jeffro256"].verdict is verify.Verdict.REFUSED
    assert "not a regular file" in by["jeffro256"].reason


def test_too_many_signers_are_judged_up_to_the_limit(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sigs, rel, package, _ = copy_release("monero-win", tmp_path)
    for i in range(6):
        shutil.copytree(rel / "jeffro256", rel / f"zz{i}")
    monkeypatch.setattr(verify, "MAX_SIGNERS", 8)
    r = run_gverify(
        ["--no-markup", *release_args("monero-win", sigs)], capsys, monkeypatch, keys.home
    )
    lines = verdict_lines(r.out)
    assert sum(line.endswith(": OK") for line in lines) == 8  # 5 real + zz0..zz2
    assert [line for line in lines if line.endswith("REFUSED")] == [
        "zz3: REFUSED",
        "zz4: REFUSED",
        "zz5: REFUSED",
    ]
    assert "more than 8 signer entries" in r.out
