"""What gverify finds: verdicts, per-signer results, agreement groups and the
report of one release (filled in by :mod:`gitian.verify`, rendered by
:mod:`gitian.report`)."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field

from gitian import gpgstatus
from gitian.explain import Explanation
from gitian.manifest import manifest_files
from gitian.sigtree import Layout


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
    keys: int = 0  # distinct primary keys, not revoked, among the signers


@dataclass(slots=True)
class ReleaseReport:
    """The verdicts for one release, and what they add up to."""

    package: str
    release: str
    path: str
    compare_to: str | None = None
    min_ok: int | None = None
    layout: Layout = Layout.GITIAN
    signers: list[SignerResult] = field(default_factory=list)
    reference: str | None = None
    groups: list[Group] = field(default_factory=list)
    # Why groups whose out_manifest differs from the reference's differ (gitian only).
    explanations: list[Explanation] = field(default_factory=list)

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

    def agreed(self) -> tuple[Group | None, str]:
        """The group whose out_manifest the signers agreed on, or None and why.

        With ``--min-ok N``: the one group, of this release and name, whose
        signers hold at least N distinct keys that are not revoked (a MISMATCH
        elsewhere does not stop it; two such groups do).  Without: the
        reference group, when every signer is OK.
        """
        if self.min_ok is None:
            ref = next((g for g in self.groups if g.is_reference and g.ok), None)
            if self.verified and ref is not None:
                return ref, ""
            return None, "not every signer is OK (give --min-ok N to accept a quorum)"
        reached = [
            g
            for g in self.groups
            if g.release == self.release and g.package == self.package and g.keys >= self.min_ok
        ]
        if len(reached) == 1:
            return reached[0], ""
        if reached:
            return None, f"{len(reached)} groups with different outputs reached --min-ok"
        best = max((g.keys for g in self.groups), default=0)
        return None, f"no group reached --min-ok {self.min_ok} distinct keys (the most: {best})"

    def manifest_of(self, group: Group) -> str:
        """The out_manifest ``group`` agreed on."""
        return next(
            s.out_manifest
            for s in self.signers
            if s.name in group.signers and s.out_manifest is not None
        )


@dataclass(frozen=True, slots=True)
class Job:
    """One release to judge: a release directory and the package whose
    attestations in it are judged (a descriptor name, or a Guix kind)."""

    release_dir: str  # spelled as the user gave it (paths in the report are too)
    package: str
    release: str
    layout: Layout = Layout.GITIAN
    only: frozenset[str] | None = None  # judge only these signer entries (None: all)


def differences(reference: str, theirs: SignerResult, release: str, package: str) -> Differences:
    """What differs between the reference out_manifest and ``theirs``."""
    mine = theirs.out_manifest or ""
    ref_files = manifest_files(reference)
    their_files = manifest_files(mine)
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
