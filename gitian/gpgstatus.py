"""What ``gpg --verify`` says, read the careful way: its status grammar and the verdicts.

gpg's machine-readable status (``--status-fd``) is the only thing a verdict
is made of; its human text is for people.  The status is split on ``b"\\n"``
only, in bytes - gpg escapes newlines in status fields, but not U+2028,
U+2029 or U+0085, which ``str.splitlines()`` would break lines at - and every
line must fit the grammar of GnuPG's ``doc/DETAILS`` (:func:`parse_status`):
a line that does not makes the signature bad, it is never skipped.  The
exit status counts too (:attr:`Verification.good`).
"""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass

from gitian.text import printable

#: The one status word gpg gives each signature (doc/DETAILS, "GOODSIG").
GOODSIG, EXPKEYSIG, REVKEYSIG = "GOODSIG", "EXPKEYSIG", "REVKEYSIG"
BADSIG, EXPSIG, ERRSIG = "BADSIG", "EXPSIG", "ERRSIG"
#: A valid signature: by a good key, by a key that has expired since, by a revoked key.
GOOD_STATUSES = frozenset({GOODSIG, EXPKEYSIG, REVKEYSIG})
_RESULTS = GOOD_STATUSES | {BADSIG, EXPSIG, ERRSIG}


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature packet's outcome, from gpg's status lines."""

    status: str  # one of _RESULTS
    keyid: str  # the key id (or fingerprint) gpg named in that line
    fingerprint: str = ""  # VALIDSIG: the key (or subkey) that made it
    primary: str = ""  # VALIDSIG: its primary key
    created: int = 0  # VALIDSIG/ERRSIG: when the signature was made (seconds since 1970)
    errcode: str = ""  # ERRSIG rc: 9 = no public key, 4 = unknown algorithm


@dataclass(frozen=True, slots=True)
class Verification:
    """The result of checking one detached signature."""

    returncode: int
    signatures: tuple[Signature, ...] = ()
    status_lines: tuple[str, ...] = ()  # decoded for reports; never parsed again
    text: str = ""  # gpg's human-readable messages (stderr), for people only
    problem: str = ""  # set when gpg could not run or said something outside its grammar

    @property
    def good(self) -> bool:
        """gpg exited 0, its status fits the grammar, and every signature in the
        file is valid (a key that has expired or been revoked since counts;
        the caller decides what those mean)."""
        return (
            self.returncode == 0
            and not self.problem
            and bool(self.signatures)
            and all(s.status in GOOD_STATUSES and s.fingerprint for s in self.signatures)
        )

    @property
    def fingerprints(self) -> frozenset[str]:
        """Signing-key and primary-key fingerprints of every valid signature."""
        return frozenset(f for s in self.signatures for f in (s.fingerprint, s.primary) if f)

    @property
    def primaries(self) -> frozenset[str]:
        return frozenset(s.primary for s in self.signatures if s.primary)

    def reason(self) -> str:
        """One printable line saying why the signature is not good (empty when it is)."""
        if self.good:
            return ""
        if self.problem:
            return self.problem
        for s in self.signatures:
            keyid = printable(s.keyid)
            if s.status == ERRSIG and s.errcode == "9":
                return f"no public key for key {keyid} in the keyring"
            if s.status == ERRSIG:
                return f"signature by key {keyid} could not be checked (gpg error {s.errcode})"
            if s.status == BADSIG:
                return f"BAD signature by key {keyid}: the signed file was changed"
            if s.status == EXPSIG:
                return f"the signature by key {keyid} has expired"
            if not s.fingerprint:
                return f"gpg gave no VALIDSIG for the signature by key {keyid}"
        if not self.signatures:
            return "no signature found (not a detached OpenPGP signature, or a truncated one)"
        return f"gpg failed with exit status {self.returncode}"


# --------------------------------------------------------------------------
# the status grammar (GnuPG doc/DETAILS), on bytes

# Field shapes, written into the patterns below as <KEYID>, <FPR>, <TIME>, <DATE>:
# a long key id, a v4 or v5/v6 fingerprint, seconds since 1970 or ISO 8601
# (DETAILS allows both), a date.
_FIELDS = {
    b"<KEYID>": rb"[0-9A-F]{16}",
    b"<FPR>": rb"(?:[0-9A-F]{40}|[0-9A-F]{64})",
    b"<TIME>": rb"(?:[0-9]+|[0-9]{8}T[0-9]{6})",
    b"<DATE>": rb"(?:[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{8}T[0-9]{6})",
}
_ANY = rb"(?: .*)?"  # free text: escaped by gpg, informational only
_RESULT = rb" (<KEYID>|<FPR>) .*"  # key id (or fingerprint), then the user ID

#: Keyword -> what may follow it on the line.  Only what ``gpg --verify`` of a
#: detached signature says; anything else (PLAINTEXT of a signed message,
#: NODATA, BADARMOR, decryption, ...) makes the check bad.
_SHAPES: dict[bytes, bytes] = {
    b"NEWSIG": rb"(?: [^ ]+)?",  # the Signer's User ID, percent-escaped
    b"KEY_CONSIDERED": rb" <FPR> [0-9]+",
    b"KEYEXPIRED": rb" <TIME>",
    b"KEYREVOKED": rb"",
    b"SIG_ID": rb" [^ ]+ <DATE> <TIME>",
    **dict.fromkeys((b"GOODSIG", b"EXPKEYSIG", b"REVKEYSIG", b"EXPSIG", b"BADSIG"), _RESULT),
    # keyid pkalgo hashalgo class time rc [fpr|-] (the fingerprint since 2.2.7)
    b"ERRSIG": rb" (<KEYID>) [0-9]+ [0-9]+ [0-9a-fA-F]{2} (<TIME>) ([0-9]+)(?: (?:<FPR>|-))?",
    b"NO_PUBKEY": rb" (<KEYID>)",
    # fpr date timestamp expires version reserved pkalgo hashalgo class [primary]
    b"VALIDSIG": rb" (<FPR>) <DATE> (<TIME>) <TIME> [0-9]+ [0-9]+ [0-9]+ [0-9]+"
    rb" ([0-9A-Fa-f]{2})(?: (<FPR>))?",
    b"NOTATION_FLAGS": rb" [01] [01]",
    b"VERIFICATION_COMPLIANCE_MODE": rb" [0-9]+",
    **dict.fromkeys(
        (b"TRUST_UNDEFINED", b"TRUST_NEVER", b"TRUST_MARGINAL", b"TRUST_FULLY", b"TRUST_ULTIMATE"),
        _ANY,
    ),
    **dict.fromkeys((b"NOTATION_NAME", b"NOTATION_DATA", b"POLICY_URL", b"SIG_SUBPACKET"), _ANY),
    **dict.fromkeys((b"TOFU_USER", b"TOFU_STATS", b"TOFU_STATS_SHORT", b"TOFU_STATS_LONG"), _ANY),
    # gpg's own failures: never good (see _parse), but the signature's result
    # line, if any, says better what went wrong.
    **dict.fromkeys((b"ERROR", b"FAILURE"), _ANY),
}


def _compile(shape: bytes) -> re.Pattern[bytes]:
    for name, pattern in _FIELDS.items():
        shape = shape.replace(name, pattern)
    return re.compile(shape, re.S)


_GRAMMAR = {keyword: _compile(shape) for keyword, shape in _SHAPES.items()}
_PREFIX = b"[GNUPG:] "
#: Lines that belong to one signature: only after its NEWSIG.
_PER_SIGNATURE = {k.encode() for k in _RESULTS} | {b"VALIDSIG", b"NO_PUBKEY", b"SIG_ID"}
#: What gpg means by the status lines that end a check early, for the reason.
_FAILURES = {
    b"NODATA": "no signature found (not a detached OpenPGP signature, or a truncated one)",
    b"UNEXPECTED": "not a detached OpenPGP signature (unexpected data)",
    b"BADARMOR": "the signature's ASCII armor is corrupt",
    b"PLAINTEXT": "not a detached signature: the file holds signed data of its own",
}


class _Bad(Exception):
    """Status output outside the grammar; the message says where."""


def _keyid_of(fingerprint: str) -> str:
    """The key id a fingerprint implies: the low 64 bits of a v4 (SHA-1)
    fingerprint, the high 64 bits of a v5/v6 (SHA-256) one (RFC 9580 5.5.4)."""
    return fingerprint[-16:] if len(fingerprint) == 40 else fingerprint[:16]


def _named(field_value: str, fingerprint: str) -> bool:
    """Whether a status line's key id (or fingerprint) names ``fingerprint``."""
    if len(field_value) == 16:
        return field_value == _keyid_of(fingerprint)
    return field_value == fingerprint


def _shown(line: bytes) -> str:
    return printable(line.decode("utf-8", "replace"), limit=120)


def parse_status(raw: bytes) -> tuple[Signature, ...]:
    """The signatures gpg's status output reports, one per NEWSIG.

    Raises :class:`ValueError` with a printable one-line reason when the
    output does not fit the grammar of GnuPG's ``doc/DETAILS``: per signature
    exactly one NEWSIG, then exactly one of GOODSIG, EXPKEYSIG, REVKEYSIG,
    BADSIG, EXPSIG, ERRSIG; a VALIDSIG after a valid one only, at most one,
    naming a 40- or 64-hex fingerprint whose key id is the one in that line,
    for a document signature (class 00 or 01); every other line a known
    informational one.
    """
    try:
        return _parse(raw)
    except _Bad as e:
        raise ValueError(str(e)) from None


def _parse(raw: bytes) -> tuple[Signature, ...]:
    if raw and not raw.endswith(b"\n"):
        raise _Bad("gpg's status output ends in the middle of a line")
    blocks: list[dict[str, str]] = []
    errors: list[bytes] = []
    for n, line in enumerate(raw.split(b"\n")[:-1] if raw else [], 1):
        if not line.startswith(_PREFIX):
            raise _Bad(f"gpg status line {n} is not a status line: {_shown(line)}")
        keyword, _, rest = line[len(_PREFIX) :].partition(b" ")
        if keyword in _FAILURES:
            raise _Bad(_FAILURES[keyword])
        grammar = _GRAMMAR.get(keyword)
        args = b" " + rest if rest or line.endswith(b" ") else b""
        m = grammar.fullmatch(args) if grammar is not None else None
        if m is None:
            raise _Bad(f"gpg said something a check of a signature does not: {_shown(line)}")
        kw = keyword.decode()
        if keyword in (b"ERROR", b"FAILURE"):
            errors.append(line)
            continue
        if kw == "NEWSIG":
            blocks.append({})
            continue
        if keyword not in _PER_SIGNATURE:
            continue
        if not blocks:
            raise _Bad(f"gpg status {kw} before any NEWSIG")
        cur = blocks[-1]
        groups = [g.decode("ascii") if g is not None else "" for g in m.groups()]
        if kw in _RESULTS:
            if "status" in cur:
                raise _Bad(f"two results for one signature ({cur['status']} and {kw})")
            cur["status"], cur["keyid"] = kw, groups[0]
            if kw == ERRSIG:
                cur["created"], cur["errcode"] = groups[1], groups[2]
        elif kw == "VALIDSIG":
            if cur.get("status") not in GOOD_STATUSES | {EXPSIG} or "fingerprint" in cur:
                raise _Bad("gpg status VALIDSIG out of place")
            fpr, created, sig_class, primary = groups
            if not _named(cur["keyid"], fpr):
                raise _Bad(f"VALIDSIG names key {fpr}, but {cur['status']} named {cur['keyid']}")
            if sig_class not in ("00", "01"):
                raise _Bad(f"not a signature of a document (signature class {sig_class})")
            cur["fingerprint"], cur["primary"], cur["created"] = fpr, primary or fpr, created
        elif kw == "NO_PUBKEY":
            if cur.get("status") != ERRSIG or groups[0] != cur["keyid"]:
                raise _Bad("gpg status NO_PUBKEY out of place")
    if errors and all(b.get("status") in GOOD_STATUSES for b in blocks):
        raise _Bad(f"gpg reported an error: {_shown(errors[0])}")
    out: list[Signature] = []
    for b in blocks:
        if "status" not in b:
            raise _Bad("a signature without a result (NEWSIG alone)")
        created = b.get("created", "")
        out.append(
            Signature(
                status=b["status"],
                keyid=b["keyid"],
                fingerprint=b.get("fingerprint", ""),
                primary=b.get("primary", ""),
                created=int(created) if created.isdigit() else _iso_seconds(created),
                errcode=b.get("errcode", ""),
            )
        )
    return tuple(out)


def _iso_seconds(value: str) -> int:
    """Seconds since 1970 of gpg's ISO form ``yyyymmddThhmmss`` (UTC); 0 when empty."""
    if not value:
        return 0
    return calendar.timegm(time.strptime(value, "%Y%m%dT%H%M%S"))
