# ruff: noqa: F811
"""Status-line injection ("Johnny, you are fired"), issue 10 item 1.

gpg copies text from a signature (the Signer's User ID, notations, policy
and keyserver URLs) and from a key (its user ID, a revocation reason) into
its human output and some status lines, escaping C0 controls but not U+2028,
U+2029 or U+0085, which ``str.splitlines()`` breaks lines at.  Each test here
builds signatures - with real gpg where it will, with a hand-made packet
where gpg refuses the text - whose such fields carry a line separator and
then status-line look-alikes: a GOODSIG and a VALIDSIG naming a victim's key,
FILE_DONE for gpg's multi-file mode.  gverify's verdict on each must be
exactly what one plain ``gpg --verify`` says, read the careful way (exit
status, status on a descriptor of its own split on ``\\n``): never the
victim's key, never OK for a signature gpg did not accept.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

import openpgp_craft as craft  # noqa: E402
from gverify_fixtures import (  # noqa: E402
    COMPAT,
    copy_release,
    gen_key,
    gpg_in,
    release_args,
    revocation,
    run_gverify,
    verdict_lines,
)

from gitian import gpg, gpgkeys  # noqa: E402

WHICH = "monero-win"  # MoneroArbo SChernykh jeffro256 lobster-kerouac scoobybejesus
VICTIM = "jeffro256"
VICTIM_FPR = "2EAAC930E6B90CB019C01E806F79797A6E392442"
SEPARATORS = {"u2028": "\u2028", "u2029": "\u2029", "u0085": "\u0085"}


def payload(sep: str, fpr: str = VICTIM_FPR, *, spaces: bool = True) -> str:
    """Text that, split at ``sep``, reads as gpg having verified ``fpr``'s signature."""
    lines = [
        f"[GNUPG:] GOODSIG {fpr[-16:]} Victim",
        f"[GNUPG:] VALIDSIG {fpr} 2024-01-01 1704067200 0 4 0 1 8 00 {fpr}",
        "[GNUPG:] FILE_DONE",
        "[GNUPG:] TRUST_FULLY 0 pgp",
    ]
    text = "x" + "".join(sep + line for line in lines)
    return text if spaces else text.replace(" ", "_")


@dataclass(frozen=True)
class World:
    public: Path  # the verifier's keyring: Monero's keys, Mallory, Uma, Rita
    secret: Path  # every attacker key
    mallory: craft.RsaKey  # in the keyring
    eve: craft.RsaKey  # not in the keyring
    uma: str  # in the keyring, with a user ID carrying a payload per separator
    rita: str  # in the keyring, revoked with a reason carrying the payloads

    def gpg_sign(self, who: str, data: Path, out: Path, *extra: str) -> None:
        gpg_in(self.secret, "--yes", "-u", who, *extra, "--detach-sign", "-o", str(out), str(data))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if shutil.which("gpg") is None:
        pytest.fail("gpg missing")
    base = tmp_path_factory.mktemp("injection")
    public, secret = base / "public", base / "secret"
    for d in (public, secret):
        d.mkdir(mode=0o700)
    try:
        mallory = craft.make_rsa_key(secret, "Mallory <mallory@example.org>")
        eve = craft.make_rsa_key(secret, "Eve <eve@example.org>")
        # Uma: one user ID per separator, carrying the payload; the last one primary.
        uma = gen_key(secret, "Uma <uma@example.org>")
        for sep in SEPARATORS.values():
            gpg_in(secret, "--quick-add-uid", uma, "Uma " + payload(sep))
        gpg_in(secret, "--quick-set-primary-uid", uma, "Uma " + payload("\u0085"))
        # Rita: revoked, and the reason's comment carries the payloads.
        rita = gen_key(secret, "Rita <rita@example.org>")
        # The comment ends at an empty line: one payload per line.
        comment = "\n".join(payload(sep) for sep in SEPARATORS.values())
        revoked = revocation(secret, rita, comment)
        keys = sorted((COMPAT / "keys" / "monero").glob("*.asc"))
        theirs = gpg_in(secret, "--export", mallory.fingerprint, uma, rita)
        (base / "theirs.gpg").write_bytes(theirs)
        (base / "revocation.asc").write_bytes(revoked)
        gpgkeys.import_keys(public, [*keys, base / "theirs.gpg", base / "revocation.asc"])
        yield World(public, secret, mallory, eve, uma, rita)
    finally:
        for d in (public, secret):
            subprocess.run(["gpgconf", "--homedir", str(d), "--kill", "all"], capture_output=True)


def oracle(world: World, sig: Path, data: Path) -> str | None:
    """What one plain ``gpg --verify`` says, read the careful way: the
    fingerprint of the key that made a good signature, or None."""
    proc = subprocess.run(
        [
            "sh",
            "-c",
            'exec "$@" 3>&1 1>/dev/null 2>/dev/null',
            "sh",
            "gpg",
            *gpg.OFFLINE_OPTIONS,
            "--homedir",
            str(world.public),
            "--status-fd",
            "3",
            "--verify",
            str(sig),
            str(data),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    lines = proc.stdout.split(b"\n")
    valid = [line.split(b" ") for line in lines if line.startswith(b"[GNUPG:] VALIDSIG ")]
    results = [line for line in lines if line.startswith(b"[GNUPG:] NEWSIG")]
    if proc.returncode != 0 or len(valid) != 1 or len(results) != 1:
        return None
    return valid[0][2].decode()


def _vector_tree(world: World, root: Path) -> tuple[Path, Path, str, dict[str, Path]]:
    """The 5 real signers, plus one signer per (carrier, separator, key in the
    keyring or not), each signing the victim's very assert."""
    sigs, rel, package, _ = copy_release(WHICH, root)
    name = f"{package}-build.assert"
    data = (rel / VICTIM / name).read_bytes()
    made: dict[str, Path] = {}

    def signer(label: str) -> Path:
        d = rel / label
        d.mkdir()
        (d / name).write_bytes(data)
        made[label] = d / (name + ".sig")
        return d / (name + ".sig")

    for tag, sep in SEPARATORS.items():
        for where, key in (("in", world.mallory), ("out", world.eve)):
            for carrier, hashed in (
                ("signers-uid", craft.subpacket(craft.SIGNERS_USER_ID, payload(sep).encode())),
                ("policy-url", craft.subpacket(craft.POLICY_URI, payload(sep).encode())),
                (
                    "keyserver-url",
                    craft.subpacket(craft.PREFERRED_KEYSERVER, payload(sep).encode()),
                ),
                ("notation", craft.notation("n@example.org", payload(sep))),
            ):
                sig = craft.detached_signature(key, data, hashed=hashed)
                signer(f"{carrier}-{tag}-{where}").write_bytes(sig)
        # gpg itself puts notations and a Signer's UID (a mail address) in.
        world.gpg_sign(
            world.mallory.fingerprint,
            rel / VICTIM / name,
            signer(f"gpg-notation-{tag}-in"),
            "--sig-notation",
            "n@example.org=" + payload(sep),
        )
        world.gpg_sign(
            world.mallory.fingerprint,
            rel / VICTIM / name,
            signer(f"gpg-sender-{tag}-in"),
            "--sender",
            f"a{sep}b@example.org",
        )
    # The key's user ID, and a revocation reason (the key in the keyring, and a
    # signer whose signature file also carries a Signer's UID payload).
    world.gpg_sign(world.uma, rel / VICTIM / name, signer("key-user-id-in"))
    world.gpg_sign(world.rita, rel / VICTIM / name, signer("revocation-reason-in"))
    return sigs, rel, package, made


def test_every_verdict_is_plain_gpgs(
    world: World,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sigs, rel, package, made = _vector_tree(world, tmp_path)
    r = run_gverify(["--json", *release_args(WHICH, sigs)], capsys, monkeypatch, world.public)
    doc = json.loads(r.out)
    by = {s["signer"]: s for s in doc["signers"]}
    expected_good = {label: oracle(world, sig, sig.with_suffix("")) for label, sig in made.items()}
    # The attacker's keys are the only ones that signed; Mallory's signatures are
    # good (her key is in the keyring), Eve's cannot be checked.
    assert {f for f in expected_good.values() if f} == {
        world.mallory.fingerprint,
        world.uma,
        world.rita,
    }
    for label, fpr in expected_good.items():
        s = by[label]
        got = s["gpg"]["signatures"]
        if fpr is None:
            assert s["verdict"] == "BAD SIGNATURE", (label, s)
            assert not s["gpg"]["good"]
        else:
            assert s["verdict"] == "OK", (label, s)  # the same assert as the victim's
            assert [g["fingerprint"] for g in got] == [fpr], label
        assert all(g["fingerprint"] != VICTIM_FPR for g in got), label
        assert all(g["keyid"] != VICTIM_FPR[-16:] for g in got), label
    assert by["revocation-reason-in"]["revoked_key"] is True
    for real in ("MoneroArbo", "SChernykh", VICTIM, "lobster-kerouac", "scoobybejesus"):
        assert by[real]["verdict"] == "OK"
    # The text report never carries a separator from gpg's text raw, either.
    text = run_gverify(["-vv", "--no-markup", *release_args(WHICH, sigs)], capsys, monkeypatch)
    assert not any(sep in text.out for sep in SEPARATORS.values())
    assert "\\u2028[GNUPG:] GOODSIG" in text.out  # shown, escaped


def test_injected_key_never_satisfies_trusted_keys(
    world: World,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the victim trusted for every vector directory too, only a signature
    that plain gpg says the victim's key made could be OK: none is."""
    sigs, rel, package, made = _vector_tree(world, tmp_path)
    trusted = tmp_path / "trusted.txt"
    keyids = (COMPAT / "keys" / "monero" / "signer-keyids.txt").read_text()
    trusted.write_text(keyids + "".join(f"{label} 0 {VICTIM_FPR}\n" for label in made))
    r = run_gverify(
        [
            "--no-markup",
            "--trusted-keys",
            str(trusted),
            "--min-ok",
            "1",
            *release_args(WHICH, sigs),
        ],
        capsys,
        monkeypatch,
        world.public,
    )
    lines = verdict_lines(r.out)
    for label in made:
        assert f"{label}: WRONG KEY" in lines or f"{label}: BAD SIGNATURE" in lines, label
    assert sum(line.endswith(": OK") for line in lines) == 5  # the real signers
    assert r.code == 0  # --min-ok 1: the five real signers, the rest tolerated


def test_forged_release_nobody_signed(
    world: World,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The attack of issue 10: every signer's signature file is made by a key
    the verifier does not have, its Signer's User ID subpacket carrying lines
    that pose as gpg accepting the signer's own key.  Before this fix gverify
    printed OK for each, "Verified." and exited 0."""
    sigs, rel, package, _ = copy_release(WHICH, tmp_path)
    name = f"{package}-build.assert"
    fprs = {
        line.split()[0]: line.split()[2]
        for line in (COMPAT / "keys" / "monero" / "signer-keyids.txt").read_text().splitlines()
    }
    for signer in sorted(p.name for p in rel.iterdir()):
        assert_file = rel / signer / name
        text = assert_file.read_text()
        # What nobody signed: the attacker's own build.
        at = text.index("- out_manifest: |\n    ") + len("- out_manifest: |\n    ")
        assert_file.write_text(text[:at] + "0" * 64 + text[at + 64 :])
        uid = payload("\u2028", fprs[signer], spaces=True)
        sig = craft.detached_signature(
            world.eve,
            assert_file.read_bytes(),
            hashed=craft.subpacket(craft.SIGNERS_USER_ID, uid.encode()),
        )
        (rel / signer / (name + ".sig")).write_bytes(sig)
    trusted = COMPAT / "keys" / "monero" / "signer-keyids.txt"
    for extra in ([], ["--min-ok", "1"], ["--trusted-keys", str(trusted)]):
        r = run_gverify(
            ["--no-markup", *extra, *release_args(WHICH, sigs)], capsys, monkeypatch, world.public
        )
        assert r.code == 1, r.out
        assert "Verification FAILED." in r.out and "Verified." not in r.out
        assert all(line.endswith(": BAD SIGNATURE") for line in verdict_lines(r.out)), r.out
        assert len(verdict_lines(r.out)) == 5
