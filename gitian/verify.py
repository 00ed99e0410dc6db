"""gverify's engine: judge every signer of one release (SPEC §5).

For each signer directory under ``<dest>/<release>`` (walked in sorted order)
the assert and its detached signature are read once, with a size cap, never
through a symlink that leads out of the tree.  The signature is checked over
exactly those bytes (:mod:`gitian.gpg`, offline); only then is the assert
parsed, with the one safe YAML loader, and compared with the reference
signer's.  Anything wrong with one signer is that signer's verdict; the
others are still judged.  Nothing here prints: :mod:`gitian.cli.gverify`
renders the :class:`ReleaseReport`.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence

from gitian import gpg
from gitian.errors import InputError
from gitian.manifest import report_fields
from gitian.record import Record
from gitian.text import printable

#: Largest assert we read (real ones are 5–150 kB; the reader allows 64 MiB).
MAX_ASSERT_BYTES = 32 * 1024 * 1024
#: Largest detached signature we read (real ones are under 2 kB).
MAX_SIGNATURE_BYTES = 64 * 1024
#: Most signer directories we look at in one release.
MAX_SIGNERS = 10_000


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
TOLERABLE = frozenset(
    {
        Verdict.BAD_SIGNATURE,
        Verdict.WRONG_KEY,
        Verdict.BAD_ASSERT,
        Verdict.REFUSED,
        Verdict.MISSING_RESULT,
        Verdict.MISSING_SIGNATURE,
    }
)


class Differences(Record):
    """How one signer's assert differs from the reference's."""

    __slots__ = ("changed", "only_in_reference", "only_in_signer", "release", "name", "lines")

    def __init__(
        self,
        changed: tuple[str, ...] = (),  # files with another hash
        only_in_reference: tuple[str, ...] = (),
        only_in_signer: tuple[str, ...] = (),
        release: tuple[str | None, str] | None = None,  # (theirs, expected)
        name: tuple[str | None, str] | None = None,
        # The classic -v view: line pairs (reference, signer) that differ, zipped.
        lines: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.changed = changed
        self.only_in_reference = only_in_reference
        self.only_in_signer = only_in_signer
        self.release = release
        self.name = name
        self.lines = lines


class SignerResult:
    """Everything gverify knows about one signer (filled in as it is judged)."""

    __slots__ = (
        "name",
        "assert_path",
        "sig_path",
        "verdict",
        "reason",
        "verification",
        "out_manifest",
        "release",
        "package",
        "differences",
    )

    def __init__(self, name: str, assert_path: str, sig_path: str) -> None:
        self.name = name  # the directory name, raw (print it with printable())
        self.assert_path = assert_path
        self.sig_path = sig_path
        self.verdict: Verdict | None = None
        self.reason = ""
        self.verification: gpg.Verification | None = None
        self.out_manifest: str | None = None
        self.release: str | None = None
        self.package: str | None = None
        self.differences: Differences | None = None

    @property
    def out_digest(self) -> str | None:
        if self.out_manifest is None:
            return None
        return hashlib.sha256(self.out_manifest.encode("utf-8", "surrogateescape")).hexdigest()

    @property
    def primary_key(self) -> str | None:
        """The primary key that made the (good) signature, for counting distinct keys."""
        v = self.verification
        if v is None or not v.good:
            return None
        return min(v.primaries) if v.primaries else None


class Group(Record):
    """Signers whose verified asserts carry the same out_manifest."""

    __slots__ = ("digest", "signers", "is_reference")

    def __init__(self, digest: str, signers: tuple[str, ...], is_reference: bool) -> None:
        self.digest = digest
        self.signers = signers
        self.is_reference = is_reference


class ReleaseReport:
    """The verdicts for one release, and what they add up to."""

    def __init__(
        self,
        package: str,
        release: str,
        path: str | os.PathLike[str],
        *,
        compare_to: str | None = None,
        min_ok: int | None = None,
    ) -> None:
        self.package = package
        self.release = release
        self.path = path
        self.compare_to = compare_to
        self.min_ok = min_ok
        self.signers: list[SignerResult] = []
        self.reference: str | None = None
        self.groups: list[Group] = []

    @property
    def ok_keys(self) -> int:
        """Number of distinct primary keys among OK signers."""
        return len({s.primary_key for s in self.signers if s.verdict is Verdict.OK})

    @property
    def verified(self) -> bool:
        verdicts = [s.verdict for s in self.signers]
        if not verdicts:
            return False
        if self.min_ok is None:
            return all(v is Verdict.OK for v in verdicts)
        if any(v is Verdict.MISMATCH for v in verdicts):
            return False
        if any(v not in TOLERABLE and v is not Verdict.OK for v in verdicts):
            return False
        return self.ok_keys >= self.min_ok

    @property
    def exit_code(self) -> int:
        return 0 if self.verified else 1


# --------------------------------------------------------------------------
# trusted keys


_HEX = re.compile(r"(0x)?[0-9A-Fa-f]+")


class TrustedKeys(Record):
    """Which key fingerprints may sign for which signer directory.

    Names are compared case-insensitively (Bitcoin's keys.txt writes
    ``(Emzy)`` for the directory ``emzy``).  A binding may name a primary key
    or a signing subkey.
    """

    __slots__ = ("bindings",)

    def __init__(self, bindings: Mapping[str, frozenset[str]]) -> None:
        self.bindings = bindings

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.bindings.items())))

    def keys_for(self, signer: str) -> frozenset[str]:
        return self.bindings.get(signer.casefold(), frozenset())

    def owners_of(self, fingerprints: Iterable[str]) -> list[str]:
        fps = set(fingerprints)
        return sorted(n for n, keys in self.bindings.items() if keys & fps)

    @classmethod
    def parse(cls, text: str, where: str) -> TrustedKeys:
        """Read ``signer keyid fingerprint`` lines or ``FINGERPRINT Name (handle)`` lines."""
        bindings: dict[str, set[str]] = {}
        for n, raw_line in enumerate(text.splitlines(), 1):
            line = raw_line.strip()
            if not line or line.startswith("#"):
                continue
            words = line.split()
            names: list[str]
            fpr: str
            if _is_fingerprint(words[0]):
                # Bitcoin keys.txt: FINGERPRINT Full Name (handle)
                fpr = _norm_fpr(words[0])
                rest = " ".join(words[1:])
                if not rest:
                    raise InputError(f"{where}:{n}: a fingerprint without a signer name")
                names = [rest]
                handle = re.search(r"\(([^()]+)\)\s*$", rest)
                if handle:
                    names.append(handle.group(1).strip())
                elif len(words) > 2:
                    names.extend(words[1:])
            elif len(words) >= 3 and _is_fingerprint(words[2]):
                # signer-keyids.txt: signer keyid fingerprint
                names = [words[0]]
                fpr = _norm_fpr(words[2])
            elif len(words) == 2 and _is_fingerprint(words[1]):
                names = [words[0]]
                fpr = _norm_fpr(words[1])
            else:
                raise InputError(
                    f"{where}:{n}: not 'FINGERPRINT NAME' nor 'SIGNER KEYID FINGERPRINT': "
                    f"{printable(line[:80])!r}"
                )
            for name in names:
                bindings.setdefault(name.casefold(), set()).add(fpr)
        if not bindings:
            raise InputError(f"{where}: no key bindings in the file")
        return cls({k: frozenset(v) for k, v in bindings.items()})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrustedKeys:
        try:
            with open(path, "rb") as f:
                raw = f.read(4 * 1024 * 1024 + 1)
        except OSError as e:
            raise InputError(f"--trusted-keys: cannot read {path}: {e.strerror}") from None
        if len(raw) > 4 * 1024 * 1024:
            raise InputError(f"--trusted-keys: {path} is larger than 4 MiB")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"--trusted-keys: {path} is not UTF-8 text") from None
        return cls.parse(text, str(path))


def _is_fingerprint(word: str) -> bool:
    w = word[2:] if word.lower().startswith("0x") else word
    return len(w) in (40, 64) and _HEX.fullmatch(w) is not None


def _norm_fpr(word: str) -> str:
    return (word[2:] if word.lower().startswith("0x") else word).upper()


# --------------------------------------------------------------------------
# reading the tree


class _Refused(Exception):
    """A file we will not read; the message says why."""


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _read_capped(path: str, root: str, cap: int, what: str) -> bytes | None:
    """Read ``path`` (None when it does not exist), refusing escapes and oversize.

    A symlink is followed only when it stays inside ``root``; FIFOs, devices and
    directories are refused, and at most ``cap`` bytes are accepted.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise _Refused(f"cannot look at the {what}: {e.strerror}") from None
    target = os.fspath(path)
    if stat.S_ISLNK(st.st_mode):
        real = os.path.realpath(path)
        if not _inside(real, root):
            raise _Refused(
                f"the {what} is a symlink leading out of the signature tree "
                f"(to {printable(real)}); not followed"
            )
        if not os.path.lexists(real) or not os.path.exists(real):
            return None
        target = real
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(target, flags)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise _Refused(f"cannot open the {what}: {e.strerror}") from None
    try:
        fst = os.fstat(fd)
        if not stat.S_ISREG(fst.st_mode):
            raise _Refused(f"the {what} is not a regular file")
        if fst.st_size > cap:
            raise _Refused(f"the {what} is larger than {cap} bytes ({fst.st_size}); not read")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 << 20, cap + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:
                raise _Refused(f"the {what} is larger than {cap} bytes; not read")
        return b"".join(chunks)
    finally:
        os.close(fd)


def list_signers(release_dir: str | os.PathLike[str]) -> list[tuple[str, str | None]]:
    """Signer directory names, sorted, each with a refusal reason or ``None``.

    Plain files are not signers and are skipped (as in the classic tool).
    """
    root = os.path.realpath(release_dir)
    out: list[tuple[str, str | None]] = []
    try:
        entries = list(os.scandir(release_dir))
    except OSError as e:
        raise InputError(f"{release_dir}: cannot list: {e.strerror}") from None
    if len(entries) > MAX_SIGNERS:
        raise InputError(f"{release_dir}: more than {MAX_SIGNERS} entries")
    for entry in sorted(entries, key=lambda e: e.name):
        name = entry.name
        try:
            if entry.is_symlink():
                real = os.path.realpath(entry.path)
                if not _inside(real, root) or real == root:
                    # Whatever it points to, it is not followed; say so.
                    where = "back to the top of" if real == root else "out of"
                    out.append(
                        (
                            name,
                            f"the signer entry is a symlink leading {where} the signature "
                            f"tree (to {printable(real)}); not followed",
                        )
                    )
                    continue
                if os.path.isdir(real):
                    out.append((name, None))
                continue
            if entry.is_dir(follow_symlinks=False):
                out.append((name, None))
        except OSError:
            continue
    return out


# --------------------------------------------------------------------------
# judging


def _read_one(
    result: SignerResult, assert_path: str, sig_path: str, root: str, refused: str | None
) -> tuple[bytes, bytes] | None:
    """Read one signer's assert and signature, or give the signer its verdict."""
    if refused:
        result.verdict, result.reason = Verdict.REFUSED, refused
        return None
    try:
        data = _read_capped(assert_path, root, MAX_ASSERT_BYTES, "assert")
        if data is None:
            result.verdict = Verdict.MISSING_RESULT
            return None
        sig = _read_capped(sig_path, root, MAX_SIGNATURE_BYTES, "signature")
        if sig is None:
            result.verdict = Verdict.MISSING_SIGNATURE
            return None
    except _Refused as e:
        result.verdict, result.reason = Verdict.REFUSED, str(e)
        return None
    return sig, data


def _judge_signature(
    result: SignerResult, v: gpg.Verification, trusted: TrustedKeys | None
) -> bool:
    """Record gpg's verdict and the key binding; True when the assert may be parsed."""
    result.verification = v
    if not v.good:
        result.verdict, result.reason = Verdict.BAD_SIGNATURE, v.reason()
        return False
    if trusted is None:
        return True
    allowed = trusted.keys_for(result.name)
    if allowed & v.fingerprints:
        return True
    made_by = ", ".join(
        s.fingerprint
        if s.primary in ("", s.fingerprint)
        else f"{s.fingerprint} (subkey of {s.primary})"
        for s in v.signatures
    )
    owners = trusted.owners_of(v.fingerprints)
    whose = (
        ("bound to " + ", ".join(printable(o) for o in owners))
        if owners
        else ("not bound to any signer")
    )
    if not allowed:
        result.reason = (
            f"good signature by key {made_by} ({whose}), but the trusted keys "
            f"name no key for {printable(result.name)}"
        )
    else:
        result.reason = (
            f"good signature by key {made_by} ({whose}), not by a key "
            f"trusted for {printable(result.name)}"
        )
    result.verdict = Verdict.WRONG_KEY
    return False


def _parse(
    result: SignerResult,
    data: bytes,
    parsed: dict[bytes, tuple[str, str | None, str | None]] | None = None,
) -> None:
    """Parse a verified assert; an unusable one is that signer's BAD ASSERT.

    ``parsed`` remembers what earlier asserts of this release parsed to: signers
    who built the same thing often sign byte-identical asserts, and the same
    bytes parse to the same fields (only a failure's message names the signer,
    so failures are not remembered).
    """
    if parsed is not None and data in parsed:
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
    if parsed is not None:
        parsed[data] = (fields["out_manifest"], fields["release"], fields["name"])


def _manifest_files(text: str) -> dict[str, str]:
    files: dict[str, str] = {}
    for line in text.splitlines():
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


_Job = tuple[SignerResult, str | None]
_Readable = tuple[SignerResult, bytes, bytes]


def _read_all(
    release_dir: str | os.PathLike[str],
    package: str,
    shown: str,
    entries: list[tuple[str, str | None]],
) -> tuple[list[_Job], list[_Readable]]:
    """Each signer's result object, and the (signature, assert) bytes of the readable ones."""
    root = os.path.realpath(release_dir)
    assert_name = f"{package}-build.assert"
    jobs: list[_Job] = []
    for name, refused in entries:
        res = SignerResult(
            name=name,
            assert_path=os.path.join(shown, name, assert_name),
            sig_path=os.path.join(shown, name, assert_name + ".sig"),
        )
        jobs.append((res, refused))
    readable: list[_Readable] = []
    for res, refused in jobs:
        signer_dir = os.path.join(release_dir, res.name)
        got = _read_one(
            res,
            os.path.join(signer_dir, assert_name),
            os.path.join(signer_dir, assert_name + ".sig"),
            root,
            refused,
        )
        if got is not None:
            readable.append((res, *got))
    return jobs, readable


def verify_release(
    release_dir: str | os.PathLike[str],
    package: str,
    release: str,
    *,
    keyring: gpg.Keyring | None = None,
    program: Sequence[str] = ("gpg",),
    compare_to: str | None = None,
    trusted: TrustedKeys | None = None,
    min_ok: int | None = None,
    workers: int | None = None,
    display_dir: str | None = None,
) -> ReleaseReport:
    """Judge every signer under ``release_dir``.

    ``display_dir`` is how ``release_dir`` is spelled in messages (the classic
    tool prints paths as the user gave them).  Raises :class:`InputError` for
    a missing release directory or an unknown ``compare_to`` signer.
    """
    if not os.path.isdir(release_dir):
        raise InputError(f"{display_dir or release_dir} does not exist")
    keyring = keyring or gpg.Keyring()
    shown = display_dir if display_dir is not None else os.fspath(release_dir)
    entries = list_signers(release_dir)
    names = [n for n, _ in entries]
    if compare_to is not None and compare_to not in names:
        raise InputError(
            f"--compare-to: no signer {printable(compare_to, quote=True)} in "
            f"{display_dir or release_dir}"
        )
    report = ReleaseReport(
        package=package, release=release, path=release_dir, compare_to=compare_to, min_ok=min_ok
    )
    jobs, readable = _read_all(release_dir, package, shown, entries)
    report.signers = [res for res, _ in jobs]
    if not jobs:
        return report
    checks = gpg.verify_many(
        [(sig, data) for _, sig, data in readable],
        keyring=keyring,
        program=program,
        workers=workers,
    )
    verified: list[SignerResult] = []
    parsed: dict[bytes, tuple[str, str | None, str | None]] = {}
    for (res, _, data), v in zip(readable, checks, strict=True):
        if _judge_signature(res, v, trusted):
            _parse(res, data, parsed)
            if res.verdict is None:
                verified.append(res)

    # The reference: the --compare-to signer, else the first verified signer
    # (sorted order) whose assert names this release and package.
    candidates = verified
    ref: SignerResult | None = None
    if compare_to is not None:
        ref = next((r for r in candidates if r.name == compare_to), None)
    if ref is None:
        ref = next((r for r in candidates if r.release == release and r.package == package), None)
    if ref is None and candidates:
        ref = candidates[0]
    report.reference = ref.name if ref else None
    for res in candidates:
        assert ref is not None and ref.out_manifest is not None
        if (
            res.out_manifest == ref.out_manifest
            and res.release == release
            and res.package == package
        ):
            res.verdict = Verdict.OK
        else:
            res.verdict = Verdict.MISMATCH
            res.differences = differences(ref.out_manifest, res, release, package)
    report.groups = _groups(report)
    return report


def _groups(report: ReleaseReport) -> list[Group]:
    by_digest: dict[str, list[str]] = {}
    for s in report.signers:
        d = s.out_digest
        if d is not None and s.verdict in (Verdict.OK, Verdict.MISMATCH):
            by_digest.setdefault(d, []).append(s.name)
    ref_digest = next((s.out_digest for s in report.signers if s.name == report.reference), None)
    groups = [
        Group(digest=d, signers=tuple(names), is_reference=d == ref_digest)
        for d, names in by_digest.items()
    ]
    groups.sort(key=lambda g: (-len(g.signers), not g.is_reference, g.signers[0]))
    return groups


# --------------------------------------------------------------------------
# rendering


def _gpg_lines(v: gpg.Verification, *, verbose: bool, good: bool) -> list[str]:
    """gpg's own text as the classic tool shows it: the date line (and, for a
    good signature, the "Good signature"/"aka" lines) only when verbose."""
    out = []
    for line in v.text.splitlines():
        if not verbose:
            if line.startswith("gpg: Signature made"):
                continue
            if good and (
                line.startswith("gpg: Good signature")
                or line.startswith("gpg:                 aka")
            ):
                continue
        out.append(printable(line))
    return out


def render_text(report: ReleaseReport, *, verbose: bool = False, markup: bool = True) -> str:
    """The human report: classic verdict blocks in sorted order, then a summary."""
    on, off = ("\033[1m", "\033[0m") if markup else ("", "")
    out: list[str] = []
    for s in report.signers:
        name = printable(s.name)
        if s.verdict is Verdict.MISSING_RESULT:
            out.append(f"missing result at {printable(os.fspath(s.assert_path))}")
            continue
        if s.verdict is Verdict.MISSING_SIGNATURE:
            out.append(f"missing signature at {printable(os.fspath(s.sig_path))}")
            continue
        v = s.verification
        gpg_text: list[str] = []
        if v is not None:
            gpg_text = _gpg_lines(v, verbose=verbose, good=v.good)
            out.extend(gpg_text)
        if s.reason and (s.verdict is not Verdict.BAD_SIGNATURE or not gpg_text or verbose):
            out.append(f"gverify: {s.reason}")
        verdict = s.verdict.value if s.verdict else "UNKNOWN"
        out.append(f"{on}{name}: {verdict}{off}")
        out.append("")
        if s.verdict is Verdict.MISMATCH and verbose and s.differences is not None:
            out.extend(_difference_lines(s, report))
            out.append("")
    out.extend(_summary_lines(report))
    return "\n".join(out) + "\n"


def _difference_lines(s: SignerResult, report: ReleaseReport) -> list[str]:
    d = s.differences
    assert d is not None
    ref = printable(report.reference or "?")
    name = printable(s.name)
    out = []
    for a, b in d.lines:
        out.append("- " + printable(a))
        out.append("+ " + printable(b))
    for f in d.changed:
        out.append(f"  changed hash:  {printable(f)}")
    for f in d.only_in_reference:
        out.append(f"  only in {ref} (reference):  {printable(f)}")
    for f in d.only_in_signer:
        out.append(f"  only in {name}:  {printable(f)}")
    if d.release is not None:
        out.append(
            f"  release is {printable(str(d.release[0]))!r}, expected {printable(d.release[1])!r}"
        )
    if d.name is not None:
        out.append(f"  name is {printable(str(d.name[0]))!r}, expected {printable(d.name[1])!r}")
    return out


def _summary_lines(report: ReleaseReport) -> list[str]:
    counts: dict[str, int] = {}
    for s in report.signers:
        key = s.verdict.value if s.verdict else "UNKNOWN"
        counts[key] = counts.get(key, 0) + 1
    order = [v.value for v in Verdict]
    tally = ", ".join(f"{counts[k]} {k}" for k in order if k in counts)
    n = len(report.signers)
    out = [
        f"Summary for {printable(report.package)} {printable(report.release)}: "
        f"{n} signer{'s' if n != 1 else ''}" + (f", {tally}" if tally else "")
    ]
    if report.compare_to is not None and report.reference != report.compare_to:
        out.append(
            f"  the --compare-to signer {printable(report.compare_to)} could not be verified; "
            f"the reference is {printable(report.reference or 'nobody')}"
        )
    width = len(str(max((len(g.signers) for g in report.groups), default=1)))
    for g in report.groups:
        who = ", ".join(printable(x) for x in g.signers)
        agree = "agrees" if len(g.signers) == 1 else "agree"
        tag = " (the reference)" if g.is_reference else ""
        out.append(
            f"  {len(g.signers):>{width}} {agree} on out_manifest {g.digest[:16]}{tag}: {who}"
        )
    others = [s for s in report.signers if s.verdict not in (Verdict.OK, Verdict.MISMATCH)]
    if others:
        who = ", ".join(
            f"{printable(s.name)} ({s.verdict.value if s.verdict else '?'})" for s in others
        )
        out.append(f"  {len(others):>{width}} not compared: {who}")
    if not report.signers:
        out.append(f"  no signer directories in {printable(os.fspath(report.path))}")
    if report.min_ok is not None:
        mism = sum(1 for s in report.signers if s.verdict is Verdict.MISMATCH)
        out.append(
            f"  --min-ok {report.min_ok}: {report.ok_keys} OK signer(s) with distinct keys, "
            f"{mism} MISMATCH"
        )
    out.append("Verified." if report.verified else "Verification FAILED.")
    return out


def report_dict(report: ReleaseReport) -> dict[str, object]:
    """The whole report as plain data (for ``--json``)."""
    signers = []
    for s in report.signers:
        v = s.verification
        entry: dict[str, object] = {
            "signer": s.name,
            "verdict": s.verdict.value if s.verdict else None,
            "reason": s.reason or None,
            "assert": os.fspath(s.assert_path),
            "signature": os.fspath(s.sig_path),
            "out_manifest_sha256": s.out_digest,
            "release": s.release,
            "name": s.package,
        }
        if v is not None:
            entry["gpg"] = {
                "good": v.good,
                "returncode": v.returncode,
                "signatures": [
                    {
                        "status": g.status,
                        "keyid": g.keyid,
                        "fingerprint": g.fingerprint or None,
                        "primary_fingerprint": g.primary or None,
                        "error_code": g.errcode or None,
                    }
                    for g in v.signatures
                ],
                "text": v.text,
            }
        if s.differences is not None:
            d = s.differences
            entry["differences"] = {
                "changed": list(d.changed),
                "only_in_reference": list(d.only_in_reference),
                "only_in_signer": list(d.only_in_signer),
                "release": list(d.release) if d.release else None,
                "name": list(d.name) if d.name else None,
            }
        signers.append(entry)
    return {
        "package": report.package,
        "release": report.release,
        "path": os.fspath(report.path),
        "reference": report.reference,
        "compare_to": report.compare_to,
        "min_ok": report.min_ok,
        "ok_distinct_keys": report.ok_keys,
        "verified": report.verified,
        "exit_code": report.exit_code,
        "signers": signers,
        "groups": [
            {
                "out_manifest_sha256": g.digest,
                "signers": list(g.signers),
                "reference": g.is_reference,
            }
            for g in report.groups
        ],
    }


def render_json(report: ReleaseReport) -> str:
    # ensure_ascii: names with control characters or undecodable bytes come
    # out as \u escapes, never raw.
    return json.dumps(report_dict(report), indent=2, ensure_ascii=True) + "\n"
