"""gverify's engine: judge every signer of one release (SPEC §5).

For each signer directory under ``<dest>/<release>`` (walked in sorted order)
the assert and its detached signature are read once, with a size cap, never
through a symlink that leads out of the tree and never from anything but a
regular file.  The signature is checked over exactly those bytes
(:mod:`gitian.gpg`, offline, one ``gpg --verify`` per signer); only then is
the assert parsed, with the one safe YAML loader, and compared with the
reference signer's.  Anything wrong with one signer is that signer's
verdict; the others are still judged.  Nothing here prints:
:func:`verify_release` returns a :class:`ReleaseReport`, which
:mod:`gitian.report` renders.
"""

from __future__ import annotations

import enum
import hashlib
import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from gitian import gpg, gpgstatus
from gitian.errors import InputError
from gitian.manifest import report_fields
from gitian.text import printable
from gitian.trust import TrustedKeys

#: Largest assert we read (real ones are 5–150 kB; the reader allows 64 MiB).
MAX_ASSERT_BYTES = 32 * 1024 * 1024
#: Largest detached signature we read (real ones are under 2 kB).
MAX_SIGNATURE_BYTES = 64 * 1024
#: Most signers judged in one release; the rest are listed as REFUSED.
MAX_SIGNERS = 1000


class Verdict(enum.Enum):
    """A signer's verdict; the value is the word printed after ``<signer>: ``."""

    OK = "OK"
    MISMATCH = "MISMATCH"
    BAD_SIGNATURE = "BAD SIGNATURE"
    WRONG_KEY = "WRONG KEY"
    BAD_ASSERT = "BAD ASSERT"
    REFUSED = "REFUSED"
    MISSING_RESULT = "missing result"
    MISSING_SIGNATURE = "missing signature"


#: Verdicts that ``--min-ok`` tolerates (reported, but the release can still pass).
TOLERABLE = frozenset(Verdict) - {Verdict.OK, Verdict.MISMATCH}


@dataclass(frozen=True, slots=True)
class Differences:
    """How one signer's assert differs from the reference's."""

    changed: tuple[str, ...] = ()  # files with another hash
    only_in_reference: tuple[str, ...] = ()
    only_in_signer: tuple[str, ...] = ()
    release: tuple[str | None, str] | None = None  # (theirs, expected)
    name: tuple[str | None, str] | None = None
    # The classic -v view: line pairs (reference, signer) that differ, zipped.
    lines: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class SignerResult:
    """Everything gverify knows about one signer (filled in as it is judged)."""

    name: str  # the directory name, raw (print it with printable())
    assert_path: str
    sig_path: str
    verdict: Verdict | None = None
    reason: str = ""
    verification: gpgstatus.Verification | None = None
    out_manifest: str | None = None
    release: str | None = None
    package: str | None = None
    differences: Differences | None = None
    signed_by: str | None = None  # the name of a trusted key bound to no directory
    revoked: bool = False  # made by a key revoked since: OK, but not counted for --min-ok

    @property
    def out_digest(self) -> str | None:
        if self.out_manifest is None:
            return None
        return hashlib.sha256(self.out_manifest.encode("utf-8", "surrogateescape")).hexdigest()

    @property
    def primary_key(self) -> str | None:
        """The primary key that made the (good) signature, for counting distinct keys."""
        v = self.verification
        if v is None or not v.good or not v.primaries:
            return None
        return min(v.primaries)


@dataclass(frozen=True, slots=True)
class Group:
    """Signers whose verified asserts agree: the same out_manifest, release and name."""

    digest: str
    signers: tuple[str, ...]
    is_reference: bool
    ok: bool  # the OK signers (else MISMATCH ones)
    release: str | None
    package: str | None


@dataclass(slots=True)
class ReleaseReport:
    """The verdicts for one release, and what they add up to."""

    package: str
    release: str
    path: str
    compare_to: str | None = None
    min_ok: int | None = None
    signers: list[SignerResult] = field(default_factory=list)
    reference: str | None = None
    groups: list[Group] = field(default_factory=list)

    @property
    def ok_keys(self) -> int:
        """Distinct primary keys among OK signers whose key is not revoked."""
        return len(
            {s.primary_key for s in self.signers if s.verdict is Verdict.OK and not s.revoked}
        )

    @property
    def verified(self) -> bool:
        verdicts = [s.verdict for s in self.signers]
        if not verdicts:
            return False
        if self.min_ok is None:
            return all(v is Verdict.OK for v in verdicts)
        if any(v is not Verdict.OK and v not in TOLERABLE for v in verdicts):
            return False
        return self.ok_keys >= self.min_ok

    @property
    def exit_code(self) -> int:
        return 0 if self.verified else 1


# --------------------------------------------------------------------------
# reading the tree


class _Refused(Exception):
    """A file we will not read; the message says why."""


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _resolve(path: str, root: str, what: str) -> str | None:
    """Where a symlink at ``path`` leads, if inside ``root`` (None: to nothing)."""
    try:
        real = os.path.realpath(path, strict=True)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise _Refused(f"the {what} is a symlink that cannot be followed: {e.strerror}") from None
    if not _inside(real, root):
        raise _Refused(
            f"the {what} is a symlink leading out of the signature tree "
            f"(to {printable(real)}); not followed"
        )
    return real


def _read_capped(path: str, root: str, cap: int, what: str) -> bytes | None:
    """Read ``path`` (None when it does not exist), refusing escapes and oversize.

    A symlink is followed only when it stays inside ``root``.  What the path
    leads to is looked at (``lstat``) before it is opened, and only a regular
    file is opened, so a FIFO or a device is never opened at all; the file
    opened must be the one looked at, and at most ``cap`` bytes are read.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise _Refused(f"cannot look at the {what}: {e.strerror}") from None
    target = path
    if stat.S_ISLNK(st.st_mode):
        real = _resolve(path, root, what)
        if real is None:
            return None
        target = real
        st = os.lstat(target)
    if not stat.S_ISREG(st.st_mode):
        raise _Refused(f"the {what} is not a regular file")
    if st.st_size > cap:
        raise _Refused(f"the {what} is larger than {cap} bytes ({st.st_size}); not read")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(target, flags)
    except OSError as e:
        raise _Refused(f"cannot open the {what}: {e.strerror}") from None
    try:
        fst = os.fstat(fd)
        if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(fst.st_mode):
            raise _Refused(f"the {what} changed while it was being read")
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, min(1 << 20, cap + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:
                raise _Refused(f"the {what} is larger than {cap} bytes; not read")
        return b"".join(chunks)
    finally:
        os.close(fd)


def list_signers(release_dir: str) -> list[tuple[str, str | None]]:
    """Signer directory names, sorted, each with a refusal reason or ``None``.

    Plain files are not signers and are skipped (as in the classic tool).
    Past :data:`MAX_SIGNERS` signers the rest are listed, refused unread.
    """
    root = os.path.realpath(release_dir)
    try:
        with os.scandir(release_dir) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        raise InputError(f"{printable(release_dir)}: cannot list: {e.strerror}") from None
    out: list[tuple[str, str | None]] = []
    for entry in entries:
        try:
            if entry.is_symlink():
                try:
                    real = _resolve(entry.path, root, "signer entry")
                except _Refused as e:
                    out.append((entry.name, str(e)))
                    continue
                if real is None:
                    out.append((entry.name, "the signer entry is a symlink to nothing"))
                elif real == root:
                    out.append(
                        (
                            entry.name,
                            "the signer entry is a symlink leading back to the top of the "
                            "signature tree; not followed",
                        )
                    )
                elif os.path.isdir(real):
                    out.append((entry.name, None))
            elif entry.is_dir(follow_symlinks=False):
                out.append((entry.name, None))
        except OSError as e:
            out.append((entry.name, f"cannot look at the signer entry: {e.strerror}"))
    over = f"not judged: the release has more than {MAX_SIGNERS} signer entries"
    return [(n, why if i < MAX_SIGNERS else why or over) for i, (n, why) in enumerate(out)]


def _read_one(
    result: SignerResult, release_dir: str, root: str, assert_name: str, refused: str | None
) -> tuple[bytes, bytes] | None:
    """Read one signer's signature and assert, or give the signer its verdict."""
    if refused:
        result.verdict, result.reason = Verdict.REFUSED, refused
        return None
    signer_dir = os.path.join(release_dir, result.name)
    try:
        data = _read_capped(os.path.join(signer_dir, assert_name), root, MAX_ASSERT_BYTES, "assert")
        if data is None:
            result.verdict = Verdict.MISSING_RESULT
            return None
        sig = _read_capped(
            os.path.join(signer_dir, assert_name + ".sig"), root, MAX_SIGNATURE_BYTES, "signature"
        )
        if sig is None:
            result.verdict = Verdict.MISSING_SIGNATURE
            return None
    except _Refused as e:
        result.verdict, result.reason = Verdict.REFUSED, str(e)
        return None
    return sig, data


# --------------------------------------------------------------------------
# judging


def _day(seconds: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(seconds))


def _judge_signature(
    result: SignerResult,
    v: gpgstatus.Verification,
    trusted: TrustedKeys | None,
    expiries: dict[str, int],
) -> bool:
    """Record gpg's verdict and the key binding; True when the assert may be parsed."""
    result.verification = v
    if not v.good:
        result.verdict, result.reason = Verdict.BAD_SIGNATURE, v.reason()
        return False
    for s in v.signatures:
        if s.status != gpgstatus.EXPKEYSIG:
            continue
        # gpg says EXPKEYSIG whether the key expired before or after signing.
        expired = expiries.get(s.fingerprint)
        if expired is None:
            result.verdict = Verdict.BAD_SIGNATURE
            result.reason = f"gpg says key {s.fingerprint} has expired, but not when"
            return False
        if s.created > expired:
            result.verdict = Verdict.BAD_SIGNATURE
            result.reason = (
                f"signature made on {_day(s.created)}, after its key {s.fingerprint} "
                f"expired on {_day(expired)} (if its owner has extended it, import the "
                "newer key)"
            )
            return False
    result.revoked = any(s.status == gpgstatus.REVKEYSIG for s in v.signatures)
    if trusted is None:
        return True
    allowed = trusted.keys_for(result.name)
    if allowed & v.fingerprints:
        return True
    owners = trusted.owners_of(v.fingerprints)
    if not allowed and not owners:
        result.signed_by = trusted.name_of(v.fingerprints)
        if result.signed_by is not None:
            return True
    made_by = ", ".join(
        s.fingerprint if s.primary == s.fingerprint else f"{s.fingerprint} (subkey of {s.primary})"
        for s in v.signatures
    )
    whose = "bound to " + ", ".join(printable(o) for o in owners) if owners else "not trusted"
    if allowed:
        which = f"not by a key trusted for {printable(result.name)}"
    else:
        which = f"the trusted keys name no key for {printable(result.name)}"
    result.reason = f"good signature by key {made_by} ({whose}); {which}"
    result.verdict = Verdict.WRONG_KEY
    return False


_Fields = tuple[str, str | None, str | None]


def _parse(result: SignerResult, data: bytes, parsed: dict[bytes, _Fields]) -> None:
    """Parse a verified assert; an unusable one is that signer's BAD ASSERT.

    ``parsed`` remembers what earlier asserts of this release parsed to:
    signers who built the same thing often sign byte-identical asserts (only
    a failure's message names the signer, so failures are not remembered).
    """
    if data in parsed:
        result.out_manifest, result.release, result.package = parsed[data]
        return
    try:
        fields = report_fields(data, f"{printable(result.name)}'s assert")
    except InputError as e:
        result.verdict, result.reason = Verdict.BAD_ASSERT, printable(e.message)
        return
    except (RecursionError, MemoryError, ValueError) as e:
        result.verdict = Verdict.BAD_ASSERT
        result.reason = f"unusable assert: {printable(type(e).__name__)}"
        return
    result.out_manifest = fields["out_manifest"]
    result.release = fields["release"]
    result.package = fields["name"]
    parsed[data] = (fields["out_manifest"], fields["release"], fields["name"])


def _manifest_files(text: str) -> dict[str, str]:
    files: dict[str, str] = {}
    for line in text.split("\n"):
        digest, sep, name = line.partition("  ")
        if sep:
            files[name] = digest
        elif line.strip():
            files[line] = ""
    return files


def differences(reference: str, theirs: SignerResult, release: str, package: str) -> Differences:
    """What differs between the reference out_manifest and ``theirs``."""
    mine = theirs.out_manifest or ""
    ref_files = _manifest_files(reference)
    their_files = _manifest_files(mine)
    ref_lines = reference.splitlines()
    their_lines = mine.splitlines()
    zipped = []
    for i in range(max(len(ref_lines), len(their_lines))):
        a = ref_lines[i] if i < len(ref_lines) else ""
        b = their_lines[i] if i < len(their_lines) else ""
        if a != b:
            zipped.append((a, b))
    return Differences(
        changed=tuple(
            sorted(
                f for f in ref_files.keys() & their_files.keys() if ref_files[f] != their_files[f]
            )
        ),
        only_in_reference=tuple(sorted(ref_files.keys() - their_files.keys())),
        only_in_signer=tuple(sorted(their_files.keys() - ref_files.keys())),
        release=None if theirs.release == release else (theirs.release, release),
        name=None if theirs.package == package else (theirs.package, package),
        lines=tuple(zipped),
    )


def verify_release(
    release_dir: str,
    package: str,
    release: str,
    *,
    keyring: gpg.Keyring | None = None,
    program: Sequence[str] = ("gpg",),
    compare_to: str | None = None,
    trusted: TrustedKeys | None = None,
    min_ok: int | None = None,
    jobs: int | None = None,
) -> ReleaseReport:
    """Judge every signer under ``release_dir`` (paths in the report are
    spelled as ``release_dir`` is, as the classic tool prints them).

    Raises :class:`InputError` for a missing release directory (naming the
    releases there are) or an unknown ``compare_to`` signer.
    """
    if not os.path.isdir(release_dir):
        raise InputError(
            f"{printable(release_dir)} does not exist", hint=_releases_hint(release_dir)
        )
    keyring = keyring or gpg.Keyring()
    entries = list_signers(release_dir)
    if compare_to is not None and compare_to not in [n for n, _ in entries]:
        raise InputError(
            f"--compare-to: no signer {printable(compare_to, quote=True)} in "
            f"{printable(release_dir)}"
        )
    report = ReleaseReport(package, release, release_dir, compare_to=compare_to, min_ok=min_ok)
    root = os.path.realpath(release_dir)
    assert_name = f"{package}-build.assert"
    readable: list[tuple[SignerResult, bytes, bytes]] = []
    for name, refused in entries:
        res = SignerResult(
            name,
            os.path.join(release_dir, name, assert_name),
            os.path.join(release_dir, name, assert_name + ".sig"),
        )
        report.signers.append(res)
        got = _read_one(res, release_dir, root, assert_name, refused)
        if got is not None:
            readable.append((res, *got))
    checks = gpg.verify_many(
        [(sig, data) for _, sig, data in readable], keyring=keyring, program=program, jobs=jobs
    )
    expiries = gpg.key_expiries(
        [
            s.fingerprint
            for v in checks
            if v.good
            for s in v.signatures
            if s.status == gpgstatus.EXPKEYSIG
        ],
        keyring=keyring,
        program=program,
    )
    verified: list[SignerResult] = []
    parsed: dict[bytes, _Fields] = {}
    for (res, _, data), v in zip(readable, checks, strict=True):
        if _judge_signature(res, v, trusted, expiries):
            _parse(res, data, parsed)
            if res.verdict is None:
                verified.append(res)
    _compare(report, verified)
    return report


def _releases_hint(release_dir: str) -> str:
    parent = os.path.dirname(os.path.normpath(release_dir)) or "."
    try:
        with os.scandir(parent) as it:
            names = sorted(e.name for e in it if e.is_dir())
    except OSError:
        return f"{printable(parent)} cannot be listed either"
    if not names:
        return f"there are no releases in {printable(parent)}"
    shown = ", ".join(printable(n) for n in names[:30])
    more = f" and {len(names) - 30} more" if len(names) > 30 else ""
    return f"releases in {printable(parent)}: {shown}{more}"


def _compare(report: ReleaseReport, verified: list[SignerResult]) -> None:
    """Choose the reference among the verified signers and give each of them
    OK or MISMATCH; then group them by what they signed."""
    ref: SignerResult | None = None
    if report.compare_to is not None:
        ref = next((r for r in verified if r.name == report.compare_to), None)
    if ref is None:
        ref = next(
            (r for r in verified if r.release == report.release and r.package == report.package),
            verified[0] if verified else None,
        )
    report.reference = ref.name if ref else None
    for res in verified:
        assert ref is not None and ref.out_manifest is not None
        if (
            res.out_manifest == ref.out_manifest
            and res.release == report.release
            and res.package == report.package
        ):
            res.verdict = Verdict.OK
        else:
            res.verdict = Verdict.MISMATCH
            res.differences = differences(ref.out_manifest, res, report.release, report.package)
    groups: dict[tuple[str | None, str | None, str | None, bool], list[str]] = {}
    for s in verified:
        key = (s.out_digest, s.release, s.package, s.verdict is Verdict.OK)
        groups.setdefault(key, []).append(s.name)
    ref_key = (ref.out_digest, ref.release, ref.package, ref.verdict is Verdict.OK) if ref else None
    report.groups = sorted(
        (
            Group(str(d), tuple(names), (d, r, p, ok) == ref_key, ok, r, p)
            for (d, r, p, ok), names in groups.items()
        ),
        key=lambda g: (not g.ok, -len(g.signers), not g.is_reference, g.signers[0]),
    )
