"""The audit report a maintainer pastes into a release issue (``gverify --report FILE.md``).

GitHub-flavoured Markdown: per release the signers with their verdicts and
keys, the agreement groups, who disagreed and on which files, and what
their asserts say went in differently.  Every value that came from the tree
(signer names, file names, reasons, versions) is shown as inline code, with
its backticks fenced and, inside tables, its pipes escaped, after
:func:`gitian.text.printable`: nothing read can add links, mentions, images
or HTML to the issue it is pasted into.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gitian.explain import families
from gitian.manifest import sums_lines
from gitian.report import family_line, overall_line, title
from gitian.sigsrepo import ChangeSet
from gitian.text import printable
from gitian.verdicts import Group, ReleaseReport, SignerResult, Verdict

_TICKS = re.compile(r"`+")


def code(text: str, *, cell: bool = False) -> str:
    """``text`` as an inline code span (empty: nothing)."""
    shown = printable(text)
    if not shown:
        return ""
    fence = "`" * (max((len(m) for m in _TICKS.findall(shown)), default=0) + 1)
    pad = " " if shown.startswith("`") or shown.endswith("`") else ""
    span = f"{fence}{pad}{shown}{pad}{fence}"
    return span.replace("|", "\\|") if cell else span


def _key(s: SignerResult) -> str:
    v = s.verification
    if v is None or not v.good:
        return ""
    return ", ".join(code(k, cell=True) for k in sorted(v.primaries))


def _files(s: SignerResult) -> list[str]:
    d = s.differences
    if d is None:
        return []
    out = []
    for label, names in (
        ("changed", d.changed),
        ("only in the reference", d.only_in_reference),
        (f"only in {code(s.name)}'s", d.only_in_signer),
    ):
        if names:
            out.append(f"{label}: " + ", ".join(code(n) for n in names))
    for what, pair in (("release", d.release), ("name", d.name)):
        if pair is not None:
            out.append(f"{what} is {code(str(pair[0]))}, expected {code(pair[1])}")
    return out


def _group_line(report: ReleaseReport, g: Group) -> str:
    tags = (["the reference"] if g.is_reference else []) + ([] if g.ok else ["MISMATCH"])
    tag = f" ({', '.join(tags)})" if tags else ""
    who = ", ".join(code(s) for s in g.signers)
    extra = ""
    if g.release != report.release:
        extra += f", release {code(str(g.release))}"
    if g.package != report.package:
        extra += f", name {code(str(g.package))}"
    return (
        f"- {len(g.signers)} signer(s), {g.keys} distinct key(s), agree on out_manifest "
        f"{code(g.digest[:16])}{extra}{tag}: {who}"
    )


def _release(report: ReleaseReport) -> list[str]:
    state = "verified" if report.verified else "FAILED"
    out = [f"## {code(title(report))}: {state}", ""]
    if report.min_ok is not None:
        out += [f"Quorum: --min-ok {report.min_ok}; {report.ok_keys} distinct key(s) OK.", ""]
    out += ["| signer | verdict | signing key | why |", "| --- | --- | --- | --- |"]
    for s in report.signers:
        verdict = s.verdict.value if s.verdict else "?"
        if s.signed_by is not None:
            verdict += f", signed by {code(s.signed_by, cell=True)}"
        why = s.reason + (" (the key has been revoked since)" if s.revoked else "")
        out.append(
            f"| {code(s.name, cell=True)} | {verdict} | {_key(s)} | {code(why, cell=True)} |"
        )
    out.append("")
    if report.groups:
        out += ["Agreement:", ""] + [_group_line(report, g) for g in report.groups] + [""]
    disagreed = [s for s in report.signers if s.verdict is Verdict.MISMATCH]
    if disagreed:
        out += [f"Disagreed with the reference ({code(report.reference or '?')}):", ""]
        for s in disagreed:
            out.append(f"- {code(s.name)}: " + "; ".join(_files(s)))
        out.append("")
    for e in report.explanations:
        who = ", ".join(code(s) for s in e.signers)
        out.append(
            f"What went in differently for {who} (out_manifest {code(e.digest[:16])}; "
            "the reference group's -> theirs):"
        )
        out.append("")
        out += [f"- {code(family_line(f))}" for f in families(e.differences)]
        if e.omitted:
            out.append(f"- and {e.omitted} more")
        if e.varying:
            out.append(f"- ({e.varying} other packages or inputs vary within the groups too)")
        out.append("")
    group, why = report.agreed()
    if group is not None:
        lines = [printable(line) for line in sums_lines(report.manifest_of(group))]
        fence = "`" * max([3, *(len(m) + 1 for line in lines for m in _TICKS.findall(line))])
        out += ["Agreed checksums:", "", fence, *lines, fence, ""]
    else:
        out += [f"No agreed checksums: {code(why)}", ""]
    return out


def render_markdown(reports: Sequence[ReleaseReport], changes: ChangeSet | None) -> str:
    """The whole run as one Markdown document."""
    out = ["# gverify report", "", overall_line(reports, changes), ""]
    if changes is not None:
        out += [f"## Changes since {code(changes.ref)} ({code(changes.commit[:12])})", ""]
        out += [f"- added: {code(p)}" for p in changes.added_files]
        out += [f"- **refused**: {code(p)}: {code(why)}" for p, why in changes.refused]
        out += [f"- note: {code(n)}" for n in changes.notes]
        out.append("")
    if reports:
        out += ["| release | signers | OK | verified |", "| --- | --- | --- | --- |"]
        for r in reports:
            ok = sum(s.verdict is Verdict.OK for s in r.signers)
            state = "yes" if r.verified else "**no**"
            out.append(f"| {code(title(r), cell=True)} | {len(r.signers)} | {ok} | {state} |")
        out.append("")
    for r in reports:
        out += _release(r)
    return "\n".join(out).rstrip("\n") + "\n"
