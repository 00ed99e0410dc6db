"""Why signers disagree, from what their asserts say (issue 13 item 4).

When two groups of signers signed different ``out_manifest``\\ s, their
asserts also say what went in: the ``in_manifest`` (the descriptor's hash,
input files, ``git:<commit> <dir>`` per remote) and the ``base_manifests``
(per ``<suite>-<arch>``, one ``sha256sum``-style line per installed .deb,
named ``<package>_<version>_<arch>.deb`` with the epoch's colon written
``%3a``).  The usual cause in practice was a base made on another day: a
compiler of another version.

For each group whose out_manifest differs from the reference group's, an
:class:`Explanation` lists the inputs and the packages whose values do not
overlap between the two groups: no member of one group had any version the
other group's members had.  Values that vary inside a group too (one
builder's base had a newer ``tzdata`` than another's, both agreeing) are
only counted, not listed: they do not tell the groups apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

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
    """One input or package whose value tells two groups apart.

    ``reference`` and ``other`` map each value (None: absent) to the signers
    of that group who had it.
    """

    kind: str  # "input" or "package"
    where: str  # "in_manifest", or the base: "<suite>-<arch>"
    item: str  # a file name, "git:<dir>", or "<package>:<arch>"
    reference: tuple[tuple[str | None, tuple[str, ...]], ...]
    other: tuple[tuple[str | None, tuple[str, ...]], ...]


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
    items: dict[str, str] = {}
    for line in in_manifest.split("\n"):
        if line.startswith("git:"):
            for m in _GIT.finditer(line):
                items[f"git:{m.group(2)}"] = m.group(1)
            continue
        digest, sep, name = line.partition("  ")
        if sep:
            items[name] = digest
        elif line.strip():
            items[line] = ""
    return items


def package_items(base_manifests: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
    """(base, ``<package>:<arch>``) -> version, from every base manifest."""
    items: dict[tuple[str, str], str | None] = {}
    for base, text in base_manifests:
        for line in text.split("\n"):
            _, sep, filename = line.partition("  ")
            if sep:
                name, version = deb_package(filename.strip())
                items[(base, name)] = version
    return items


def _by_value(
    values: Mapping[str, Mapping[tuple[str, str], str | None]], key: tuple[str, str]
) -> dict[str | None, list[str]]:
    out: dict[str | None, list[str]] = {}
    for signer, items in values.items():
        out.setdefault(items.get(key), []).append(signer)
    return out


def _shown(by: dict[str | None, list[str]]) -> tuple[tuple[str | None, tuple[str, ...]], ...]:
    return tuple(
        (v, tuple(sorted(s))) for v, s in sorted(by.items(), key=lambda kv: (kv[0] is None, kv))
    )


def explain(
    digest: str,
    reference: Mapping[str, Inputs],
    group: Mapping[str, Inputs],
) -> Explanation:
    """What tells ``group`` (signer -> inputs) apart from the ``reference`` group."""

    def table(members: Mapping[str, Inputs]) -> dict[str, dict[tuple[str, str], str | None]]:
        out: dict[str, dict[tuple[str, str], str | None]] = {}
        for signer, inputs in members.items():
            items: dict[tuple[str, str], str | None] = {
                ("in_manifest", k): v for k, v in input_items(inputs.in_manifest).items()
            }
            items.update(package_items(inputs.base_manifests))
            out[signer] = items
        return out

    ref, other = table(reference), table(group)
    keys: set[tuple[str, str]] = set()
    for items in (*ref.values(), *other.values()):
        keys.update(items)
    found: list[ValueDiff] = []
    varying = 0
    for key in sorted(keys, key=lambda k: (k[0] != "in_manifest", k)):
        a, b = _by_value(ref, key), _by_value(other, key)
        if a.keys() == b.keys() and len(a) == 1:
            continue
        if a.keys() & b.keys():
            varying += 1
            continue
        where, item = key
        found.append(
            ValueDiff(
                "input" if where == "in_manifest" else "package",
                where,
                item,
                _shown(a),
                _shown(b),
            )
        )
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
