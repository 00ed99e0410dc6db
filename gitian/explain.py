"""Why signers disagree, from what their asserts say (issue 13 item 4).

When two groups of signers signed different ``out_manifest``\\ s, their
asserts also say what went in: the ``in_manifest`` (the descriptor's hash,
input files, ``git:<commit> <dir>`` per remote) and the ``base_manifests``
(per ``<suite>-<arch>``, one ``sha256sum``-style line per installed .deb,
named ``<package>_<version>_<arch>.deb`` with the epoch's colon written
``%3a``).  The usual cause in practice was a base made on another day: a
compiler of another version.

For each group whose out_manifest differs from the reference group's, an
:class:`Explanation` lists the inputs and packages that tell the two groups
apart: a value (a version, a commit, a file's hash, or "none") that every
member of one group had and no member of the other.  A base manifest lists
every .deb in the target's apt cache, so one builder's may hold several
versions of a package (old ones, left from earlier upgrades); the versions
that only some members had, or that both groups had, do not tell the groups
apart and are only counted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from gitian.manifest import manifest_files

#: Most differences kept per group (the rest are counted).
MAX_LISTED = 500

_GIT = re.compile(r"git:([0-9A-Fa-f]{7,64}) (.*?)(?=git:[0-9A-Fa-f]{7,64} |$)")


@dataclass(frozen=True, slots=True)
class Inputs:
    """What one signer's assert says went into the build."""

    in_manifest: str
    base_manifests: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ValueDiff:
    """One input or package whose values tell two groups apart.

    ``reference`` holds the values every member of the reference group had and
    no member of the other, ``other`` the converse; None stands for "none"
    (the package was not there, the input not used).
    """

    kind: str  # "input" or "package"
    where: str  # "in_manifest", or the base: "<suite>-<arch>"
    item: str  # a file name, "git:<dir>", or "<package>:<arch>"
    reference: tuple[str | None, ...]
    other: tuple[str | None, ...]


@dataclass(frozen=True, slots=True)
class Explanation:
    """How one group's inputs differ from the reference group's."""

    digest: str  # the group's out_manifest sha256
    signers: tuple[str, ...]
    differences: tuple[ValueDiff, ...]
    varying: int  # items that differ, but with values both groups had
    omitted: int = 0  # differences past MAX_LISTED


def deb_package(filename: str) -> tuple[str, str | None]:
    """``gcc-9_9.3.0-10ubuntu2_amd64.deb`` -> (``gcc-9:amd64``, ``9.3.0-10ubuntu2``);
    ``automake_1%3a1.15.1-3ubuntu2_all.deb`` -> (``automake:all``, ``1:1.15.1-3ubuntu2``).
    A name that is not ``<package>_<version>_<arch>.deb`` is its own item, with
    no version."""
    stem = filename.removesuffix(".deb")
    parts = stem.split("_")
    if stem == filename or len(parts) != 3 or not all(parts):
        return filename, None
    name, version, arch = parts
    return f"{name}:{arch}", unquote(version)


def input_items(in_manifest: str) -> dict[str, str]:
    """``in_manifest`` as item -> value: file name -> sha256, ``git:<dir>`` -> commit.

    gbuild writes the remotes' ``git:`` entries run together without newlines
    (docs/formats.md); they are split at each ``git:<hex> ``.
    """
    lines = in_manifest.split("\n")
    items = manifest_files("\n".join(ln for ln in lines if not ln.startswith("git:")))
    for line in lines:
        if line.startswith("git:"):
            items.update((f"git:{m.group(2)}", m.group(1)) for m in _GIT.finditer(line))
    return items


def package_items(base_manifests: Sequence[tuple[str, str]]) -> dict[tuple[str, str], set[str]]:
    """(base, ``<package>:<arch>``) -> the versions of it in that base manifest."""
    items: dict[tuple[str, str], set[str]] = {}
    for base, text in base_manifests:
        for line in text.split("\n"):
            _, sep, filename = line.partition("  ")
            if sep:
                name, version = deb_package(filename.strip())
                items.setdefault((base, name), set()).add(version or "")
    return items


_Table = dict[str, dict[tuple[str, str], set[str]]]


def _table(members: Mapping[str, Inputs]) -> _Table:
    """signer -> (where, item) -> the values that signer had."""
    out: _Table = {}
    for signer, inputs in members.items():
        items = {("in_manifest", k): {v} for k, v in input_items(inputs.in_manifest).items()}
        items.update(package_items(inputs.base_manifests))
        out[signer] = items
    return out


def _values(table: _Table, key: tuple[str, str]) -> tuple[set[str | None], set[str | None]]:
    """The values every member had, and those any member had (None: it had none)."""
    sets: list[set[str | None]] = [set(items.get(key, {None})) for items in table.values()]
    return set.intersection(*sets), set.union(*sets)


def _sorted(values: set[str | None]) -> tuple[str | None, ...]:
    return tuple(sorted(values, key=lambda v: (v is None, v or "")))


def explain(
    digest: str,
    reference: Mapping[str, Inputs],
    group: Mapping[str, Inputs],
) -> Explanation:
    """What tells ``group`` (signer -> inputs) apart from the ``reference`` group."""
    ref, other = _table(reference), _table(group)
    keys: set[tuple[str, str]] = set()
    for items in (*ref.values(), *other.values()):
        keys.update(items)
    found: list[ValueDiff] = []
    varying = 0
    for key in sorted(keys, key=lambda k: (k[0] != "in_manifest", k)):
        ref_all, ref_any = _values(ref, key)
        their_all, their_any = _values(other, key)
        if ref_any == their_any and len(ref_any) == 1:
            continue  # the same one value everywhere
        mine, theirs = ref_all - their_any, their_all - ref_any
        if not mine and not theirs:
            varying += 1
            continue
        where, item = key
        kind = "input" if where == "in_manifest" else "package"
        found.append(ValueDiff(kind, where, item, _sorted(mine), _sorted(theirs)))
    return Explanation(
        digest,
        tuple(sorted(group)),
        tuple(found[:MAX_LISTED]),
        varying,
        max(0, len(found) - MAX_LISTED),
    )


def explain_groups(
    groups: Iterable[tuple[str, Sequence[str]]],
    reference_digest: str,
    inputs: Mapping[str, Inputs],
) -> list[Explanation]:
    """One :class:`Explanation` per group (digest, signers) whose out_manifest
    differs from ``reference_digest``, against the signers who signed that one."""
    merged: dict[str, list[str]] = {}
    for digest, signers in groups:
        merged.setdefault(digest, []).extend(s for s in signers if s in inputs)
    ref = {s: inputs[s] for s in merged.get(reference_digest, [])}
    if not ref:
        return []
    return [
        explain(d, ref, {s: inputs[s] for s in signers})
        for d, signers in merged.items()
        if d != reference_digest and signers
    ]


@dataclass(frozen=True, slots=True)
class Family:
    """Differences with the same values on both sides (a compiler's packages
    that all moved from one version to the next), for people to read."""

    kind: str
    where: str
    reference: tuple[str | None, ...]
    other: tuple[str | None, ...]
    items: tuple[str, ...]


def families(differences: Sequence[ValueDiff]) -> list[Family]:
    """``differences`` folded by (kind, where, values): the largest families first."""
    folded: dict[tuple[str, str, tuple[str | None, ...], tuple[str | None, ...]], list[str]] = {}
    for d in differences:
        folded.setdefault((d.kind, d.where, d.reference, d.other), []).append(d.item)
    out = [Family(k, w, r, o, tuple(items)) for (k, w, r, o), items in folded.items()]
    return sorted(out, key=lambda f: (f.kind != "input", -len(f.items), f.items))
