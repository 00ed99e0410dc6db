"""gverify's engine: judge every signer of one or more releases (SPEC §5).

A :class:`Job` is one release directory and the package (descriptor name, or
Guix kind) whose attestations it holds.  For each signer (walked in sorted
order) the attestation and its detached signature are read once, with a
size cap, never through a symlink that leads out of the tree and never from
anything but a regular file (:mod:`gitian.sigtree`).  The signature is
checked over exactly those bytes (:mod:`gitian.gpg`, offline, one
``gpg --verify`` per signer); only then is the attestation parsed and
compared with the reference signer's.  Anything wrong with one signer is
that signer's verdict; the others are still judged.

The checks of every release of a run share one pool of gpg processes, two
at once per CPU (:data:`gitian.gpg.PER_CPU`), and each verified attestation is parsed as
its check finishes, so a whole history goes at gpg's pace.  Nothing here
prints: :func:`judge` returns a :class:`ReleaseReport` per job, which
:mod:`gitian.report` renders.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field

from gitian import gpg, gpgkeys, gpgstatus
from gitian.errors import InputError
from gitian.explain import Inputs, explain_groups
from gitian.manifest import check_sums, report_fields
from gitian.sigtree import Layout, Refused, list_signers, read_capped, releases_hint
from gitian.text import printable
from gitian.trust import TrustedKeys
from gitian.verdicts import (
    Group,
    Job,
    ReleaseReport,
    SignerResult,
    Verdict,
    differences,
)

#: Largest assert we read (real ones are 5–150 kB; the reader allows 64 MiB).
MAX_ASSERT_BYTES = 32 * 1024 * 1024
#: Largest detached signature we read (real ones are under 2 kB).
MAX_SIGNATURE_BYTES = 64 * 1024
#: Most signers judged in one release; the rest are listed as REFUSED.
MAX_SIGNERS = 1000


# --------------------------------------------------------------------------
# judging one signer


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


_Fields = tuple[str, str | None, str | None, Inputs | None]


def _fields(data: bytes, who: str, job: Job) -> _Fields:
    """What a verified attestation says (InputError: unusable)."""
    if job.layout is Layout.GUIX:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{who}: not UTF-8 text (byte {e.start})") from None
        check_sums(text, who)
        # SHA256SUMS name neither release nor package: the place does.
        return text, job.release, job.package, None
    f = report_fields(data, who)
    return f["out_manifest"], f["release"], f["name"], Inputs(f["in_manifest"], f["base_manifests"])


def _parse(result: SignerResult, data: bytes, release: _Release) -> None:
    """Parse a verified attestation; an unusable one is that signer's BAD ASSERT.

    Signers who built the same thing often sign byte-identical asserts, so
    what each distinct one parsed to is remembered for the release (only a
    failure's message names the signer, so failures are not remembered).
    """
    fields = release.parsed.get(data)
    if fields is None:
        who = f"{printable(result.name)}'s assert"
        try:
            fields = _fields(data, who, release.job)
        except InputError as e:
            result.verdict, result.reason = Verdict.BAD_ASSERT, printable(e.message)
            return
        except (RecursionError, MemoryError, ValueError) as e:
            result.verdict = Verdict.BAD_ASSERT
            result.reason = f"unusable assert: {printable(type(e).__name__)}"
            return
        release.parsed[data] = fields
    result.out_manifest, result.release, result.package, inputs = fields
    if inputs is not None:
        release.inputs[result.name] = inputs


# --------------------------------------------------------------------------
# judging releases


@dataclass(eq=False)
class _Release:
    """One job while it is being judged."""

    job: Job
    report: ReleaseReport
    to_read: list[tuple[SignerResult, str | None]]
    pending: int = 0  # checks started and not yet settled
    read: bool = False  # every signer has been read (or refused)
    finished: bool = False
    parsed: dict[bytes, _Fields] = field(default_factory=dict)
    inputs: dict[str, Inputs] = field(default_factory=dict)

    @classmethod
    def open(cls, job: Job, compare_to: str | None, min_ok: int | None) -> _Release:
        """List the release's signers (InputError: no such release directory)."""
        if not os.path.isdir(job.release_dir):
            raise InputError(
                f"{printable(job.release_dir)} does not exist",
                hint=releases_hint(job.release_dir),
            )
        entries = [
            (n, why)
            for n, why in list_signers(job.release_dir)
            if job.only is None or n in job.only
        ]
        over = f"not judged: the release has more than {MAX_SIGNERS} signer entries"
        entries = [
            (n, why if i < MAX_SIGNERS else why or over) for i, (n, why) in enumerate(entries)
        ]
        if compare_to not in [n for n, _ in entries]:
            compare_to = None
        report = ReleaseReport(
            job.package,
            job.release,
            job.release_dir,
            compare_to=compare_to,
            min_ok=min_ok,
            layout=job.layout,
        )
        a, s = job.layout.attestation(job.package), job.layout.signature(job.package)
        to_read = []
        for name, refused in entries:
            signer_dir = os.path.join(job.release_dir, name)
            res = SignerResult(name, os.path.join(signer_dir, a), os.path.join(signer_dir, s))
            report.signers.append(res)
            to_read.append((res, refused))
        return cls(job, report, to_read)

    def read_one(self, result: SignerResult, refused: str | None) -> tuple[bytes, bytes] | None:
        """Read one signer's signature and attestation, or give the signer its verdict."""
        if refused:
            result.verdict, result.reason = Verdict.REFUSED, refused
            return None
        root = os.path.realpath(self.job.release_dir)
        try:
            data = read_capped(result.assert_path, root, MAX_ASSERT_BYTES, "assert")
            if data is None:
                result.verdict = Verdict.MISSING_RESULT
                return None
            sig = read_capped(result.sig_path, root, MAX_SIGNATURE_BYTES, "signature")
            if sig is None:
                result.verdict = Verdict.MISSING_SIGNATURE
                return None
        except Refused as e:
            result.verdict, result.reason = Verdict.REFUSED, str(e)
            return None
        return sig, data

    def settle(
        self,
        result: SignerResult,
        v: gpgstatus.Verification,
        data: bytes,
        trusted: TrustedKeys | None,
        expiries: dict[str, int],
    ) -> None:
        """Judge one finished check, and parse the attestation if it verified."""
        if _judge_signature(result, v, trusted, expiries):
            _parse(result, data, self)

    def finish(self) -> None:
        """Compare the verified signers, once all of them are judged."""
        if self.finished:
            return
        self.finished = True
        verified = [s for s in self.report.signers if s.verdict is None]
        _compare(self.report, verified)
        ref = next((g for g in self.report.groups if g.is_reference), None)
        if ref is not None and len({g.digest for g in self.report.groups}) > 1:
            self.report.explanations = explain_groups(
                [(g.digest, g.signers) for g in self.report.groups], ref.digest, self.inputs
            )
        self.parsed.clear()
        self.inputs.clear()


def _needs_expiry(v: gpgstatus.Verification) -> bool:
    return v.good and any(s.status == gpgstatus.EXPKEYSIG for s in v.signatures)


def judge(
    jobs: Sequence[Job],
    *,
    keyring: gpg.Keyring | None = None,
    program: Sequence[str] = ("gpg",),
    compare_to: str | None = None,
    trusted: TrustedKeys | None = None,
    min_ok: int | None = None,
    parallel: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[ReleaseReport]:
    """Judge every signer of every job; one report per job, in order.

    Every release directory is listed before any gpg starts: a missing one
    raises :class:`InputError` (naming the releases there are), as does a
    ``compare_to`` signer that none of the releases has.  ``progress`` is
    called with the number of signers judged since its last call and how
    many there are in all.
    """
    keyring = keyring or gpg.Keyring()
    releases = [_Release.open(job, compare_to, min_ok) for job in jobs]
    if compare_to is not None and releases and all(r.report.compare_to is None for r in releases):
        where = releases[0].job.release_dir if len(releases) == 1 else "any of the releases"
        raise InputError(
            f"--compare-to: no signer {printable(compare_to, quote=True)} in {printable(where)}"
        )
    total = sum(len(r.to_read) for r in releases)

    def tick(n: int) -> None:
        if progress is not None:
            progress(n, total)

    numbers = itertools.count()
    inflight: dict[int, tuple[_Release, SignerResult, bytes]] = {}
    deferred: list[tuple[_Release, SignerResult, bytes, gpgstatus.Verification]] = []

    def items() -> Iterator[tuple[bytes, bytes]]:
        # Read as the pool asks for work, so only the files being checked are in memory.
        for rel in releases:
            for res, refused in rel.to_read:
                got = rel.read_one(res, refused)
                if got is None:
                    tick(1)
                    continue
                inflight[next(numbers)] = (rel, res, got[1])
                rel.pending += 1
                yield got
            rel.read = True
            if rel.pending == 0:
                rel.finish()

    with closing(gpg.verify_each(items(), keyring=keyring, program=program, jobs=parallel)) as each:
        for i, v in each:
            rel, res, data = inflight.pop(i)
            if _needs_expiry(v):  # judged once gpg has said when those keys expired
                deferred.append((rel, res, data, v))
                continue
            rel.settle(res, v, data, trusted, {})
            tick(1)
            rel.pending -= 1
            if rel.pending == 0 and rel.read:
                rel.finish()
    if deferred:
        expiries = gpgkeys.key_expiries(
            [
                s.fingerprint
                for *_, v in deferred
                for s in v.signatures
                if s.status == gpgstatus.EXPKEYSIG
            ],
            keyring=keyring,
            program=program,
        )
        for rel, res, data, v in deferred:
            rel.settle(res, v, data, trusted, expiries)
            tick(1)
    for rel in releases:
        rel.finish()
    return [r.report for r in releases]


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
    layout: Layout = Layout.GITIAN,
) -> ReleaseReport:
    """Judge every signer under ``release_dir`` (paths in the report are
    spelled as ``release_dir`` is, as the classic tool prints them): one
    :class:`Job` through :func:`judge`."""
    (report,) = judge(
        [Job(release_dir, package, release, layout)],
        keyring=keyring,
        program=program,
        compare_to=compare_to,
        trusted=trusted,
        min_ok=min_ok,
        parallel=jobs,
    )
    return report


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
    groups: dict[tuple[str | None, str | None, str | None, bool], list[SignerResult]] = {}
    for s in verified:
        key = (s.out_digest, s.release, s.package, s.verdict is Verdict.OK)
        groups.setdefault(key, []).append(s)
    ref_key = (ref.out_digest, ref.release, ref.package, ref.verdict is Verdict.OK) if ref else None
    report.groups = sorted(
        (
            Group(
                str(d),
                tuple(s.name for s in members),
                (d, r, p, ok) == ref_key,
                ok,
                r,
                p,
                len({s.primary_key for s in members if not s.revoked}),
            )
            for (d, r, p, ok), members in groups.items()
        ),
        key=lambda g: (not g.ok, -len(g.signers), not g.is_reference, g.signers[0]),
    )
