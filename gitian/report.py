"""Rendering a gverify :class:`~gitian.verify.ReleaseReport`: text for people, JSON.

The text keeps the classic tool's verdict blocks - ``<signer>: OK`` and the
other verdict lines, a blank line after each, ``missing result at P`` - and
adds a summary.  What else is shown depends on ``verbose``:

* 0: our one-line reason before each verdict that is not OK (gpg's own text
  is for when something needs looking into);
* 1: gpg's text as the classic tool showed it by default (without "Signature
  made", and for a good signature without "Good signature"/"aka"), and the
  differences of a MISMATCH;
* 2: all of gpg's text, as the classic ``-v`` showed it, and every reason.

Everything that came from outside - names, paths, gpg's text, key ids - is
shown through :func:`gitian.text.printable`; the JSON escapes it too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from gitian import gpgstatus
from gitian.errors import InputError, VerifyError
from gitian.explain import Explanation, Family, families
from gitian.manifest import check_sums, sums_lines
from gitian.sigsrepo import ChangeSet
from gitian.sigtree import Layout
from gitian.text import printable
from gitian.verdicts import ReleaseReport, SignerResult, Verdict

#: Differences of one group shown in the text (--json has them all).
MAX_SHOWN = 40

BOLD, PLAIN = "\033[1m", "\033[0m"


def _gpg_lines(v: gpgstatus.Verification, verbose: int) -> list[str]:
    """gpg's own text for one signer, filtered as the classic tool did."""
    if verbose < 1:
        return []
    out = []
    for line in v.text.split("\n"):
        if verbose < 2 and (
            line.startswith("gpg: Signature made")
            or v.good
            and line.startswith(("gpg: Good signature", "gpg:                 aka"))
        ):
            continue
        out.append(printable(line))
    while out and not out[-1]:
        out.pop()
    return out


def title(report: ReleaseReport) -> str:
    """What a report is about, printable: ``<name> <release>``, or for Guix
    attestations ``<version> <kind>.SHA256SUMS``."""
    if report.layout is Layout.GUIX:
        return f"{printable(report.release)} {printable(report.package)}.SHA256SUMS"
    return f"{printable(report.package)} {printable(report.release)}"


def render_text(report: ReleaseReport, *, verbose: int = 0, markup: bool = False) -> str:
    """The human report: classic verdict blocks in sorted order, then a summary."""
    on, off = (BOLD, PLAIN) if markup else ("", "")
    out: list[str] = []
    for s in report.signers:
        if s.verdict is Verdict.MISSING_RESULT:
            out.append(f"missing result at {printable(s.assert_path)}")
            continue
        if s.verdict is Verdict.MISSING_SIGNATURE:
            out.append(f"missing signature at {printable(s.sig_path)}")
            continue
        gpg_text = _gpg_lines(s.verification, verbose) if s.verification else []
        out.extend(gpg_text)
        # With gpg's text shown, its own words say why a signature is bad (classic block).
        if s.reason and (s.verdict is not Verdict.BAD_SIGNATURE or not gpg_text or verbose > 1):
            out.append(f"gverify: {s.reason}")
        if s.revoked:
            out.append(
                f"gverify: note: made by a key that has been revoked "
                f"({_keys(s)}); not counted for --min-ok"
            )
        verdict = s.verdict.value if s.verdict else "UNKNOWN"
        if s.signed_by is not None:
            verdict += f", signed by {printable(s.signed_by)}"
        out.append(f"{on}{printable(s.name)}: {verdict}{off}")
        out.append("")
        if s.verdict is Verdict.MISMATCH and verbose and s.differences is not None:
            out.extend(_difference_lines(s, report))
            out.append("")
    out.extend(_summary_lines(report, verbose))
    return "\n".join(out) + "\n"


def _keys(s: SignerResult) -> str:
    v = s.verification
    return ", ".join(sorted(v.primaries)) if v is not None else "?"


def _difference_lines(s: SignerResult, report: ReleaseReport) -> list[str]:
    d = s.differences
    assert d is not None
    ref = printable(report.reference or "?")
    out = []
    for a, b in d.lines:
        out += ["- " + printable(a), "+ " + printable(b)]
    out += [f"  changed hash:  {printable(f)}" for f in d.changed]
    out += [f"  only in {ref} (reference):  {printable(f)}" for f in d.only_in_reference]
    out += [f"  only in {printable(s.name)}:  {printable(f)}" for f in d.only_in_signer]
    for what, pair in (("release", d.release), ("name", d.name)):
        if pair is not None:
            theirs, wanted = (printable(str(x), quote=True) for x in pair)
            out.append(f"  {what} is {theirs}, expected {wanted}")
    return out


def _summary_lines(report: ReleaseReport, verbose: int = 0) -> list[str]:
    counts: dict[Verdict | None, int] = {}
    for s in report.signers:
        counts[s.verdict] = counts.get(s.verdict, 0) + 1
    tally = ", ".join(f"{counts[v]} {v.value}" for v in Verdict if v in counts)
    n = len(report.signers)
    out = [
        f"Summary for {title(report)}: "
        f"{n} signer{'s' if n != 1 else ''}" + (f", {tally}" if tally else "")
    ]
    if report.compare_to is not None and report.reference != report.compare_to:
        out.append(
            f"  the --compare-to signer {printable(report.compare_to)} could not be verified; "
            f"the reference is {printable(report.reference or 'nobody')}"
        )
    width = len(str(max((len(g.signers) for g in report.groups), default=1)))
    for g in report.groups:
        agree = "agrees" if len(g.signers) == 1 else "agree"
        what = f"out_manifest {g.digest[:16]}"
        if g.release != report.release:
            what += f", release {printable(str(g.release), quote=True)}"
        if g.package != report.package:
            what += f", name {printable(str(g.package), quote=True)}"
        tags = (["the reference"] if g.is_reference else []) + ([] if g.ok else ["MISMATCH"])
        tag = f" ({', '.join(tags)})" if tags else ""
        who = ", ".join(printable(x) for x in g.signers)
        out.append(f"  {len(g.signers):>{width}} {agree} on {what}{tag}: {who}")
    if verbose:
        for e in report.explanations:
            out.extend(explanation_lines(e))
    revoked = [printable(s.name) for s in report.signers if s.verdict is Verdict.OK and s.revoked]
    if revoked:
        out.append(f"  {len(revoked):>{width}} OK by a revoked key: {', '.join(revoked)}")
    others = [s for s in report.signers if s.verdict not in (Verdict.OK, Verdict.MISMATCH)]
    if others:
        who = ", ".join(
            f"{printable(s.name)} ({s.verdict.value if s.verdict else '?'})" for s in others
        )
        out.append(f"  {len(others):>{width}} not compared: {who}")
    if not report.signers:
        out.append(f"  no signer directories in {printable(report.path)}")
    if report.min_ok is not None:
        mism = counts.get(Verdict.MISMATCH, 0)
        out.append(
            f"  --min-ok {report.min_ok}: {report.ok_keys} OK signer(s) with distinct keys "
            f"not revoked, {mism} MISMATCH"
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
            "signed_by": s.signed_by,
            "revoked_key": s.revoked,
            "assert": s.assert_path,
            "signature": s.sig_path,
            "out_manifest_sha256": s.out_digest,
            "release": s.release,
            "name": s.package,
        }
        if v is not None:
            entry["gpg"] = {
                "good": v.good,
                "returncode": v.returncode,
                "problem": v.problem or None,
                "signatures": [
                    {
                        "status": g.status,
                        "keyid": g.keyid,
                        "fingerprint": g.fingerprint or None,
                        "primary_fingerprint": g.primary or None,
                        "created": g.created or None,
                        "error_code": g.errcode or None,
                    }
                    for g in v.signatures
                ],
                "status": list(v.status_lines),
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
        "layout": report.layout.value,
        "path": report.path,
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
                "verdict": "OK" if g.ok else "MISMATCH",
                "distinct_keys": g.keys,
            }
            for g in report.groups
        ],
        "explanations": [_explanation_dict(e) for e in report.explanations],
    }


def render_json(report: ReleaseReport) -> str:
    return _json(report_dict(report))


def _json(doc: object) -> str:
    # ensure_ascii: names with control characters or undecodable bytes come
    # out as \u escapes, never raw.
    return json.dumps(doc, indent=2, ensure_ascii=True) + "\n"


# --------------------------------------------------------------------------
# why groups differ (issue 13 item 4)


def _shown(values: tuple[str | None, ...]) -> str:
    return ", ".join("none" if v is None else printable(v) for v in values) or "-"


def family_line(f: Family) -> str:
    """One family of differences: ``package (bionic-amd64) 8.3.0-6ubuntu1~18.04.1 ->
    8.4.0-1ubuntu1~18.04: cpp-8:amd64, g++-8:amd64, ...``: what every member
    of the reference group had, and what every member of the other group had
    instead ("none": not there; "-": nothing of their own)."""
    where = "" if f.kind == "input" else f" ({printable(f.where)})"
    items = ", ".join(printable(i) for i in f.items)
    return f"{f.kind}{where} {_shown(f.reference)} -> {_shown(f.other)}: {items}"


def explanation_lines(e: Explanation) -> list[str]:
    """The ``-v`` lines saying what else differs for a group that built something else."""
    who = ", ".join(printable(s) for s in e.signers)
    if not e.differences:
        return [f"  out_manifest {e.digest[:16]} ({who}): no input or base package tells it apart"]
    out = [
        f"  out_manifest {e.digest[:16]} ({who}) was built from other inputs "
        "(the reference group's -> theirs):"
    ]
    folded = families(e.differences)
    out += [f"    {family_line(f)}" for f in folded[:MAX_SHOWN]]
    hidden = sum(len(f.items) for f in folded[MAX_SHOWN:]) + e.omitted
    if hidden:
        out.append(f"    ... and {hidden} more (--json lists them)")
    if e.varying:
        out.append(f"    ({e.varying} other packages or inputs vary within the groups too)")
    return out


def _explanation_dict(e: Explanation) -> dict[str, object]:
    return {
        "out_manifest_sha256": e.digest,
        "signers": list(e.signers),
        "varying_within_groups": e.varying,
        "omitted": e.omitted,
        "differences": [
            {
                "kind": d.kind,
                "where": d.where,
                "item": d.item,
                "reference": list(d.reference),
                "group": list(d.other),
            }
            for d in e.differences
        ],
    }


# --------------------------------------------------------------------------
# a run of several releases


def changes_lines(cs: ChangeSet) -> list[str]:
    """What ``--changed-since`` found, before the reports."""
    out = [
        f"Changes since {printable(cs.ref)} ({cs.commit[:12]}) to HEAD ({cs.head[:12]}): "
        f"{len(cs.added_files)} attestation file(s) added, {len(cs.refused)} refused"
    ]
    for path, why in cs.refused:
        out.append(f"gverify: {printable(path)}: {printable(why)}")
    for note in cs.notes:
        out.append(f"gverify: note: {printable(note)}")
    if not cs.added and not cs.refused:
        out.append("  no attestation was added or changed")
    return out


def run_verified(reports: Sequence[ReleaseReport], changes: ChangeSet | None) -> bool:
    """Every release verified, and (with --changed-since) nothing refused."""
    if changes is not None and changes.refused:
        return False
    return all(r.verified for r in reports)


def overall_line(reports: Sequence[ReleaseReport], changes: ChangeSet | None) -> str:
    """One line for the whole run."""
    failed = [r for r in reports if not r.verified]
    refused = len(changes.refused) if changes is not None else 0
    n = len(reports)
    if not failed and not refused:
        return f"Overall: all {n} release(s) verified."
    why = [f"{refused} change(s) refused"] if refused else []
    if failed:
        shown = "; ".join(title(r) for r in failed[:20])
        more = f"; and {len(failed) - 20} more" if len(failed) > 20 else ""
        why.append(f"{len(failed)} of {n} release(s) failed: {shown}{more}")
    return f"Overall: FAILED: {', '.join(why)}."


def render_run_text(
    reports: Sequence[ReleaseReport],
    changes: ChangeSet | None,
    *,
    verbose: int = 0,
    markup: bool = False,
) -> str:
    """Every release's report, then one overall line."""
    parts = ["\n".join(changes_lines(changes)) + "\n"] if changes is not None else []
    parts += [render_text(r, verbose=verbose, markup=markup) for r in reports]
    return "\n".join(parts) + "\n" + overall_line(reports, changes) + "\n"


def render_run_json(reports: Sequence[ReleaseReport], changes: ChangeSet | None) -> str:
    """``{"releases": [<one release's object>...], "verified", "exit_code"[, "changes"]}``."""
    ok = run_verified(reports, changes)
    doc: dict[str, object] = {
        "releases": [report_dict(r) for r in reports],
        "verified": ok,
        "exit_code": 0 if ok else 1,
    }
    if changes is not None:
        doc["changes"] = {
            "ref": changes.ref,
            "commit": changes.commit,
            "head": changes.head,
            "added": sorted(changes.added_files),
            "refused": [{"path": p, "reason": why} for p, why in changes.refused],
            "notes": list(changes.notes),
        }
    return _json(doc)


def agreed_sums(reports: Sequence[ReleaseReport]) -> str:
    """The out_manifests (SHA256SUMS) the signers of every release agreed on, in
    ``sha256sum`` format: each release's in turn, lines already given once left
    out.  Raises :class:`VerifyError` naming a release without agreement, or a
    file two releases give different checksums."""
    lines: dict[str, str] = {}
    for r in reports:
        group, why = r.agreed()
        if group is None:
            raise VerifyError(f"--sha256sums: not written: {title(r)}: {why}")
        manifest = r.manifest_of(group)
        try:
            check_sums(manifest, title(r))
        except InputError as e:
            raise VerifyError(f"--sha256sums: not written: {e.message}") from None
        for line in sums_lines(manifest):
            digest, _, name = line.partition(" ")
            if lines.setdefault(name, digest) != digest:
                raise VerifyError(
                    f"--sha256sums: not written: {printable(name[1:])} has two checksums "
                    f"(the second in {title(r)})"
                )
    return "".join(f"{d} {n}\n" for n, d in lines.items())
