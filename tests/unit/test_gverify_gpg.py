"""gitian.gpg: offline verification, status parsing, batched checks."""
# ruff: noqa: F811

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gverify_fixtures import COMPAT, Keys, keys  # noqa: F401 - fixture

from gitian import gpg

MONERO = COMPAT / "sigs" / "monero-linux-0.18" / "v0.18.3.1-linux"
BITCOIN = COMPAT / "sigs" / "bitcoin-core-linux-0.21" / "0.21.2-linux"


def _pair(release: Path, signer: str) -> tuple[bytes, bytes]:
    name = release.parent.name + "-build.assert"
    return (release / signer / (name + ".sig")).read_bytes(), (release / signer / name).read_bytes()


def test_offline_options_never_reach_a_keyserver() -> None:
    opts = gpg.OFFLINE_OPTIONS
    assert "--disable-dirmngr" in opts and "--no-auto-key-retrieve" in opts
    assert "--no-autostart" in opts
    assert opts[opts.index("--auto-key-locate") + 1] == "local"
    assert not any("keyserver" == o.lstrip("-") for o in opts)


def test_good_signature_reports_fingerprints(keys: Keys) -> None:
    v = gpg.verify_detached(*_pair(BITCOIN, "fanquake"), keyring=gpg.Keyring(home=keys.home))
    assert v.good, v.text
    (s,) = v.signatures
    assert s.fingerprint == "CFB16E21C950F67FA95E558F2EEB9F5CC09526C1"  # the signing subkey
    assert s.primary == "E777299FC265DD04793070EB944D35F9AC3DB76A"
    assert v.primaries == {"E777299FC265DD04793070EB944D35F9AC3DB76A"}


def test_expired_key_still_verifies(keys: Keys) -> None:
    # luke-jr's key has expired since he signed; gpg exits 0 with EXPKEYSIG.
    v = gpg.verify_detached(*_pair(BITCOIN, "luke-jr"), keyring=gpg.Keyring(home=keys.home))
    assert v.good and v.signatures[0].status == "EXPKEYSIG"
    assert "This key has expired" in v.text


def test_missing_key_and_bad_data(keys: Keys) -> None:
    ring = gpg.Keyring(home=keys.home)
    v = gpg.verify_detached(*_pair(BITCOIN, "jonatack"), keyring=ring)
    assert not v.good and v.signatures[0].status == "ERRSIG"
    assert "no public key" in v.reason()
    sig, data = _pair(MONERO, "hyc")
    v = gpg.verify_detached(sig, data + b"\n", keyring=ring)
    assert not v.good and v.signatures[0].status == "BADSIG"
    v = gpg.verify_detached(sig[: len(sig) // 2], data, keyring=ring)
    assert not v.good and v.reason()
    v = gpg.verify_detached(b"not a signature", data, keyring=ring)
    assert not v.good and "no signature found" in v.reason()


def test_batched_verdicts_equal_one_by_one(keys: Keys) -> None:
    ring = gpg.Keyring(home=keys.home)
    items = [_pair(MONERO, s.name) for s in sorted(MONERO.iterdir())]
    items += [_pair(BITCOIN, s.name) for s in sorted(BITCOIN.iterdir())]
    sig, data = items[3]
    items.insert(2, (sig, data + b"x"))  # a bad one in the middle of a batch
    items.insert(5, (sig[:40], data))  # a truncated one
    many = gpg.verify_many(items, keyring=ring, workers=2)
    one = [gpg.verify_detached(s, d, keyring=ring) for s, d in items]
    assert [v.good for v in many] == [v.good for v in one]
    assert [v.fingerprints for v in many] == [v.fingerprints for v in one]
    # The human text of a good signature is the same either way.
    assert [v.text for v in many if v.good] == [v.text for v in one if v.good]
    assert sum(not v.good for v in many) == 3  # bad, truncated, jonatack


def test_signed_message_wrapper_only_for_one_binary_signature() -> None:
    sig, data = _pair(MONERO, "hyc")
    assert gpg.as_signed_message(sig, data) is not None
    assert gpg.as_signed_message(sig + sig, data) is None  # two packets
    assert gpg.as_signed_message(sig[:-1], data) is None  # truncated
    assert gpg.as_signed_message(b"-----BEGIN PGP SIGNATURE-----\n", data) is None
    assert gpg.as_signed_message(b"", data) is None


def test_parse_status_groups_signatures() -> None:
    status = "\n".join(
        [
            "[GNUPG:] NEWSIG",
            "[GNUPG:] GOODSIG AAAA Someone",
            "[GNUPG:] VALIDSIG " + "A" * 40 + " 2023-01-01 1 0 4 0 1 8 00 " + "B" * 40,
            "[GNUPG:] NEWSIG",
            "[GNUPG:] BADSIG CCCC Other",
            # A VALIDSIG after a BADSIG is not believed.
            "[GNUPG:] VALIDSIG " + "C" * 40 + " 2023-01-01 1 0 4 0 1 8 00 " + "C" * 40,
        ]
    )
    a, b = gpg.parse_status(status)
    assert (a.status, a.fingerprint, a.primary) == ("GOODSIG", "A" * 40, "B" * 40)
    assert (b.status, b.fingerprint) == ("BADSIG", "")
    v = gpg.Verification(returncode=0, signatures=(a, b))
    assert not v.good


def test_missing_program_is_a_clear_error(tmp_path: Path) -> None:
    from gitian.errors import ToolMissingError

    with pytest.raises(ToolMissingError):
        gpg.verify_detached(b"x", b"y", program=[str(tmp_path / "no-gpg")])


def test_import_keys_reports_nothing_importable(tmp_path: Path) -> None:
    from gitian.errors import InputError

    bad = tmp_path / "bad.asc"
    bad.write_text("not a key\n")
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    with pytest.raises(InputError):
        gpg.import_keys(home, [bad])
    with pytest.raises(InputError):
        gpg.key_files(tmp_path / "nothing-here")


def test_spawned_process_gets_only_its_descriptors(tmp_path: Path) -> None:
    """gpg is started with posix_spawn, not subprocess: it must get the
    descriptors it is given and none that this process inherited (as with
    Popen's close_fds), and an interrupted read must not leave it running."""
    leaked = os.open(tmp_path / "leak", os.O_WRONLY | os.O_CREAT)
    given = os.open(tmp_path / "given", os.O_WRONLY | os.O_CREAT)
    os.set_inheritable(leaked, True)
    try:
        script = "ls /proc/$$/fd; true"  # sh lists its own descriptors
        proc = gpg._Process(["sh", "-c", script], dict(os.environ), [given])
        fds = sorted(int(x) for x in proc.communicate(30).decode().split())
    finally:
        os.close(leaked)
        os.close(given)
    assert fds == sorted({0, 1, 2, given})
    assert proc.returncode == 0

    slow = gpg._Process(["sleep", "30"], dict(os.environ), [])
    with pytest.raises(TimeoutError):
        slow.communicate(0.2)
    assert slow.returncode is not None  # killed and reaped
    with pytest.raises(ProcessLookupError):
        os.kill(slow.pid, 0)
