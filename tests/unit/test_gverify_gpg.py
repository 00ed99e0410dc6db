"""gitian.gpg: offline verification, the status grammar, parallel checks."""
# ruff: noqa: F811

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from gverify_fixtures import COMPAT, Keys, keys  # noqa: F401 - fixture

from gitian import gpg, gpgkeys, gpgstatus

MONERO = COMPAT / "sigs" / "monero-linux-0.18" / "v0.18.3.1-linux"
BITCOIN = COMPAT / "sigs" / "bitcoin-core-linux-0.21" / "0.21.2-linux"
FPR = "CFB16E21C950F67FA95E558F2EEB9F5CC09526C1"
PRIMARY = "E777299FC265DD04793070EB944D35F9AC3DB76A"
VALIDSIG = f"[GNUPG:] VALIDSIG {FPR} 2021-10-09 1633812652 0 4 0 1 8 00 {PRIMARY}"


def _pair(release: Path, signer: str) -> tuple[bytes, bytes]:
    name = release.parent.name + "-build.assert"
    return (release / signer / (name + ".sig")).read_bytes(), (release / signer / name).read_bytes()


def _status(*lines: str) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


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
    assert s.fingerprint == FPR  # the signing subkey
    assert s.primary == PRIMARY
    assert s.created > 1_600_000_000
    assert v.primaries == {PRIMARY}
    # Status and human text arrive apart: no status line in the text, no text in the status.
    assert all(line.startswith("[GNUPG:] ") for line in v.status_lines)
    assert "[GNUPG:]" not in v.text and "using RSA key" in v.text


def test_expired_key_still_verifies(keys: Keys) -> None:
    # emzy's key has expired since he signed; gpg exits 0 with EXPKEYSIG.
    v = gpg.verify_detached(*_pair(BITCOIN, "emzy"), keyring=gpg.Keyring(home=keys.home))
    assert v.good and v.signatures[0].status == "EXPKEYSIG"
    assert "This key has expired" in v.text
    expiry = gpgkeys.key_expiries(
        [v.signatures[0].fingerprint], keyring=gpg.Keyring(home=keys.home)
    )
    assert v.signatures[0].created < expiry[v.signatures[0].fingerprint]


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


def test_parallel_verdicts_equal_one_by_one(keys: Keys) -> None:
    ring = gpg.Keyring(home=keys.home)
    items = [_pair(MONERO, s.name) for s in sorted(MONERO.iterdir())]
    items += [_pair(BITCOIN, s.name) for s in sorted(BITCOIN.iterdir())]
    sig, data = items[3]
    items.insert(2, (sig, data + b"x"))  # a bad one among them
    items.insert(5, (sig[:40], data))  # a truncated one
    many = gpg.verify_many(items, keyring=ring, jobs=3)
    one = [gpg.verify_detached(s, d, keyring=ring) for s, d in items]
    assert [v.good for v in many] == [v.good for v in one]
    assert [v.signatures for v in many] == [v.signatures for v in one]
    assert [v.text for v in many] == [v.text for v in one]
    assert sum(not v.good for v in many) == 3  # bad, truncated, jonatack


# --------------------------------------------------------------------------
# the grammar


def test_status_grammar_accepts_what_gpg_says() -> None:
    (s,) = gpgstatus.parse_status(
        _status(
            "[GNUPG:] NEWSIG fanquake@gmail.com",
            f"[GNUPG:] KEY_CONSIDERED {PRIMARY} 0",
            "[GNUPG:] SIG_ID abc+/def 2021-10-09 1633812652",
            "[GNUPG:] GOODSIG 2EEB9F5CC09526C1 Michael Ford (bitcoin) <fanquake@gmail.com>",
            "[GNUPG:] NOTATION_NAME x@example.org",
            "[GNUPG:] NOTATION_FLAGS 0 1",
            "[GNUPG:] NOTATION_DATA a%20b",
            VALIDSIG,
            "[GNUPG:] TRUST_UNDEFINED 0 pgp",
        )
    )
    assert (s.status, s.keyid, s.fingerprint, s.primary) == ("GOODSIG", FPR[-16:], FPR, PRIMARY)
    assert s.created == 1633812652


def test_a_user_id_with_line_separators_stays_one_line() -> None:
    """U+2028, U+2029 and U+0085 break str.splitlines(); the status is split on
    b"\\n" only, so what follows them is part of the user ID, not a line."""
    for sep in ("\u2028", "\u2029", "\u0085"):
        (s,) = gpgstatus.parse_status(
            _status(
                "[GNUPG:] NEWSIG",
                f"[GNUPG:] GOODSIG {FPR[-16:]} x{sep}[GNUPG:] VALIDSIG {'A' * 40} 2000-01-01 1 "
                f"0 4 0 1 8 00 {'A' * 40}",
                VALIDSIG,
            )
        )
        assert s.fingerprint == FPR


@pytest.mark.parametrize(
    ("lines", "why"),
    [
        # A line that is not a status line, or one a check of a signature never gives.
        (["[GNUPG:] NEWSIG", "gpg: Good signature", VALIDSIG], "not a status line"),
        (["[GNUPG:] NEWSIG", "[GNUPG:] PLAINTEXT 62 0 x"], "signed data of its own"),
        (["[GNUPG:] FILE_DONE"], "does not"),
        (["[GNUPG:] NODATA 1"], "no signature found"),
        # One result per signature, after its NEWSIG; VALIDSIG only after a good one.
        ([f"[GNUPG:] GOODSIG {FPR[-16:]} x", VALIDSIG], "before any NEWSIG"),
        (
            [
                "[GNUPG:] NEWSIG",
                f"[GNUPG:] GOODSIG {FPR[-16:]} x",
                f"[GNUPG:] GOODSIG {FPR[-16:]} x",
            ],
            "two results",
        ),
        (["[GNUPG:] NEWSIG", f"[GNUPG:] BADSIG {FPR[-16:]} x", VALIDSIG], "out of place"),
        (
            ["[GNUPG:] NEWSIG", f"[GNUPG:] GOODSIG {FPR[-16:]} x", VALIDSIG, VALIDSIG],
            "out of place",
        ),
        (["[GNUPG:] NEWSIG"], "without a result"),
        # VALIDSIG must name the key of the GOODSIG line, a 40/64-hex fingerprint, a document.
        (["[GNUPG:] NEWSIG", f"[GNUPG:] GOODSIG {'1' * 16} x", VALIDSIG], "named"),
        (
            ["[GNUPG:] NEWSIG", f"[GNUPG:] GOODSIG {FPR[-16:]} x", VALIDSIG.replace(FPR, FPR[:32])],
            "does not",
        ),
        (
            [
                "[GNUPG:] NEWSIG",
                f"[GNUPG:] GOODSIG {FPR[-16:]} x",
                VALIDSIG.replace(" 00 ", " 1F "),
            ],
            "class 1F",
        ),
        (["[GNUPG:] NEWSIG", "[GNUPG:] GOODSIG short x"], "does not"),
    ],
)
def test_status_outside_the_grammar_is_never_good(lines: list[str], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        gpgstatus.parse_status(_status(*lines))
    v = gpgstatus.Verification(0, problem="x")
    assert not v.good


def test_status_cut_in_the_middle_of_a_line() -> None:
    with pytest.raises(ValueError, match="middle of a line"):
        gpgstatus.parse_status(
            _status("[GNUPG:] NEWSIG") + f"[GNUPG:] GOODSIG {FPR[-16:]}".encode()
        )


def test_key_ids_of_v4_and_v5_fingerprints() -> None:
    v5 = "B" * 16 + "C" * 48
    (s,) = gpgstatus.parse_status(
        _status(
            "[GNUPG:] NEWSIG",
            f"[GNUPG:] GOODSIG {'B' * 16} x",
            f"[GNUPG:] VALIDSIG {v5} 2024-01-01 1704067200 0 5 0 22 10 00 {v5}",
        )
    )
    assert s.fingerprint == v5
    # A full fingerprint in the result line must be the very one.
    (s,) = gpgstatus.parse_status(_status("[GNUPG:] NEWSIG", f"[GNUPG:] GOODSIG {FPR} x", VALIDSIG))
    assert s.fingerprint == FPR
    with pytest.raises(ValueError, match="named"):
        gpgstatus.parse_status(
            _status("[GNUPG:] NEWSIG", f"[GNUPG:] GOODSIG {PRIMARY} x", VALIDSIG)
        )


def test_exit_status_counts() -> None:
    (s,) = gpgstatus.parse_status(
        _status("[GNUPG:] NEWSIG", f"[GNUPG:] GOODSIG {FPR[-16:]} x", VALIDSIG)
    )
    assert gpgstatus.Verification(0, (s,)).good
    assert not gpgstatus.Verification(1, (s,)).good
    assert not gpgstatus.Verification(0, ()).good


# --------------------------------------------------------------------------
# processes


def _children() -> set[int]:
    out: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        out |= {int(p) for p in (task / "children").read_text().split()}
    return out


def test_a_check_that_hangs_is_killed_and_reaped(tmp_path: Path) -> None:
    before = _children()
    hang = ["sh", "-c", "sleep 60", "sh"]
    t0 = time.monotonic()
    vs = gpg.verify_many([(b"x", b"y")] * 3, program=hang, timeout=0.5, jobs=2)
    assert time.monotonic() - t0 < 10
    assert all(not v.good and "did not finish" in v.reason() for v in vs)
    assert _children() <= before  # nothing of ours is left


def test_ctrl_c_kills_and_reaps_every_check(tmp_path: Path) -> None:
    before = _children()
    # Whichever of the first two checks comes second interrupts us (as Ctrl-C
    # would) while the other still runs.
    script = (
        'touch "$0/$$"; if [ $(ls "$0" | wc -l) -ge 2 ]; then kill -INT $PPID; fi; exec sleep 60'
    )
    program = ["sh", "-c", script, str(tmp_path)]
    with pytest.raises(KeyboardInterrupt):
        gpg.verify_many([(b"x", b"y")] * 4, program=program, jobs=2, timeout=60)
    assert _children() <= before  # nothing of ours is left


def test_gpg_gets_only_its_descriptors(tmp_path: Path) -> None:
    """Memory file descriptors for the signature and the data, the status on
    a pipe of its own (stdout, which --verify writes nothing else to; not the
    stderr pipe of the human text), and nothing this process had open."""
    leaked = os.open(tmp_path / "leak", os.O_WRONLY | os.O_CREAT)
    os.set_inheritable(leaked, True)
    script = 'exec 3>&1 >&2; ls /proc/$$/fd; readlink /proc/$$/fd/3 /proc/$$/fd/2; echo "$@"'
    try:
        (v,) = gpg.verify_many([(b"sig", b"data")], program=["sh", "-c", script, "sh"])
    finally:
        os.close(leaked)
    *listing, status_pipe, text_pipe, argv, _ = v.text.split("\n")
    fds = sorted(int(x) for x in listing if x.isdigit())
    args = argv.split()
    status_fd = int(args[args.index("--status-fd") + 1])
    specials = [int(a[2:]) for a in args if a.startswith("-&")]
    assert status_fd == 1 and len(specials) == 2
    assert status_pipe.startswith("pipe:") and text_pipe.startswith("pipe:")
    assert status_pipe != text_pipe  # never merged
    assert set(fds) == {0, 1, 2, 3, *specials}  # 3: the script's own copy of stdout
    assert leaked not in fds


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
        gpgkeys.import_keys(home, [bad])
    with pytest.raises(InputError):
        gpgkeys.key_files(tmp_path / "nothing-here")


def test_signal_module_untouched() -> None:
    # verify_many holds signals only while a child is being made.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
