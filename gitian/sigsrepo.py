"""What a change to a sigs repository did to its attestations (``gverify --changed-since``).

A sigs repository is append-only: a pull request may add attestations, never
change or remove one.  :func:`changes_since` asks git what changed between a
commit and ``HEAD`` (``git diff-tree -r -z -M``: raw records, NUL-separated,
so any byte in a path is read as it is), sorts every change of an
attestation under the signature tree into added (to be judged) or refused
(modified, removed, renamed, type changed, added as a symlink), and notes
changes to the keys directory, whose keys the added attestations are then
checked against.  Every git command is an argv list; no path or ref is ever
read as an option or a pathspec pattern.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from gitian.errors import InputError
from gitian.run import run
from gitian.sigtree import Layout, sanitary
from gitian.text import printable

#: Modes git records for a regular file.
_FILE_MODES = {"100644", "100755"}
_WHY = {
    "M": "modified",
    "D": "removed",
    "T": "changed type",
    "U": "unmerged",
    "X": "changed in a way git does not know",
}


@dataclass(frozen=True, slots=True)
class Change:
    """One record of ``git diff-tree --raw``."""

    status: str  # A, M, D, T, R, ... (a rename's score dropped)
    path: str  # relative to the repository's top, '/'-separated (undecodable bytes escaped)
    old_path: str | None = None  # renames: where it was
    new_mode: str = ""


@dataclass(slots=True)
class ChangeSet:
    """The attestations a change added, and what it did that is refused."""

    ref: str
    commit: str
    head: str
    # (release, package) -> signers who added an attestation for it
    added: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    added_files: list[str] = field(default_factory=list)  # relative to the tree
    refused: list[tuple[str, str]] = field(default_factory=list)  # (path in the tree, why)
    notes: list[str] = field(default_factory=list)


def _git(top: str, *args: str) -> bytes:
    result = run(["git", "-C", top, *args], capture=True, check=False)
    if result.returncode != 0:
        last = result.stderr.decode("utf-8", "replace").strip().split("\n")[-1]
        raise InputError(f"--changed-since: git {args[0]} failed: {printable(last)}")
    return result.stdout


def parse_raw(out: bytes) -> list[Change]:
    """The records of ``git diff-tree -r -z`` (raw format)."""
    tokens = out.split(b"\0")
    changes: list[Change] = []
    i = 0
    while i < len(tokens) and tokens[i]:
        meta = tokens[i].decode("ascii", "replace").lstrip(":").split(" ")
        if len(meta) != 5:
            raise InputError(f"--changed-since: git said something unexpected: {meta!r}")
        _, new_mode, _, _, status = meta
        letter = status[:1]
        if letter in ("R", "C"):
            old, new = os.fsdecode(tokens[i + 1]), os.fsdecode(tokens[i + 2])
            changes.append(Change(letter, new, old, new_mode))
            i += 3
        else:
            changes.append(Change(letter, os.fsdecode(tokens[i + 1]), None, new_mode))
            i += 2
    return changes


def _under(path: str, prefix: str) -> str | None:
    """``path`` relative to ``prefix`` (both relative to the top), or None."""
    if prefix in ("", "."):
        return path
    return path[len(prefix) + 1 :] if path.startswith(prefix + "/") else None


def changes_since(
    destination: str,
    ref: str,
    layout: Layout,
    packages: frozenset[str] | None,
    keys_dir: str | None = None,
) -> ChangeSet:
    """What changed in the attestations under ``destination`` between ``ref``
    and ``HEAD`` of the git repository holding it.

    ``packages`` limits which attestations are expected (None: any name);
    an attestation of another one is refused.  Raises :class:`InputError`
    when ``destination`` is not in a git repository, ``ref`` names no commit,
    or an added attestation differs in the work tree from ``HEAD`` (what is
    judged is what was committed).
    """
    if ref.startswith("-") or not ref or "\0" in ref:
        raise InputError(f"--changed-since {printable(ref, quote=True)} is not a git commit")
    if not os.path.isdir(destination):
        raise InputError(f"--changed-since: {printable(destination)} is not a directory")
    top = os.fsdecode(_git(destination, "rev-parse", "--show-toplevel").rstrip(b"\n"))
    commit = _git(top, "rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}")
    head = _git(top, "rev-parse", "--verify", "--end-of-options", "HEAD^{commit}")
    cs = ChangeSet(ref, commit.decode("ascii").strip(), head.decode("ascii").strip())
    real_top = os.path.realpath(top)
    dest = os.path.relpath(os.path.realpath(destination), real_top).replace(os.sep, "/")
    if dest.startswith(".."):
        raise InputError(f"--changed-since: {printable(destination)} is outside {top}")
    keys: str | None = None
    if keys_dir is not None:
        kd = os.path.relpath(os.path.realpath(keys_dir), real_top).replace(os.sep, "/")
        keys = None if kd.startswith("..") else kd
    raw = _git(top, "diff-tree", "-r", "-z", "-M", "--no-commit-id", cs.commit, cs.head)
    for ch in parse_raw(raw):
        if keys is not None:
            for p in (ch.path, ch.old_path):
                k = _under(p, keys) if p is not None else None
                if k is not None and "/" not in k:
                    cs.notes.append(_key_note(keys, k, ch))
        if ch.old_path is not None:
            _refuse_if_attestation(cs, layout, dest, ch.old_path, f"renamed to {ch.path}")
        rel = _under(ch.path, dest)
        if rel is None:
            continue
        parts = rel.split("/")
        package = layout.package_of(parts[-1]) if len(parts) == 3 else None
        if package is None:
            continue
        if ch.status not in ("A", "R"):
            why = _WHY.get(ch.status, f"changed ({ch.status})")
            cs.refused.append((rel, f"{why}; a sigs repository is append-only"))
        elif ch.new_mode not in _FILE_MODES:
            cs.refused.append((rel, f"added with mode {ch.new_mode}, not as a regular file"))
        elif not sanitary(parts[0]):
            cs.refused.append((rel, "the release directory's name is not sanitary"))
        elif packages is not None and package not in packages:
            cs.refused.append((rel, f"an attestation of {package}, none of the given descriptors"))
        else:
            cs.added.setdefault((parts[0], package), set()).add(parts[1])
            cs.added_files.append(rel)
    _committed(top, [f"{dest}/{p}" if dest != "." else p for p in cs.added_files])
    return cs


def _refuse_if_attestation(cs: ChangeSet, layout: Layout, dest: str, path: str, why: str) -> None:
    rel = _under(path, dest)
    if rel is not None and rel.count("/") == 2 and layout.package_of(rel.split("/")[-1]):
        cs.refused.append((rel, f"{why}; a sigs repository is append-only"))


def _key_note(keys: str, name: str, ch: Change) -> str:
    what = {"A": "added", "D": "removed", "R": "renamed"}.get(ch.status, "modified")
    signer = name.rsplit(".", 1)[0]
    return (
        f"the key file {keys}/{name} was {what} by these changes: the keys in it now are "
        f"the ones {signer}'s attestations must be signed with; review it"
    )


def _committed(top: str, paths: list[str]) -> None:
    """Refuse when a path to be judged differs in the work tree from ``HEAD``."""
    if not paths:
        return
    out = _git(top, "--literal-pathspecs", "diff", "--name-only", "-z", "HEAD", "--", *paths)
    dirty = [os.fsdecode(p) for p in out.split(b"\0") if p]
    if dirty:
        raise InputError(
            f"--changed-since: {printable(dirty[0])} differs from what HEAD holds "
            f"({len(dirty)} file(s)); commit the change, or judge a clean checkout"
        )
