"""Which releases one gverify run judges, and against which descriptor.

A run names releases with ``-r`` (several allowed), every release under the
tree with ``--all``, or the attestations a change added with
``--changed-since`` (:mod:`gitian.sigsrepo`).  Where they are:

* ``-d DEST`` given: ``DEST/<release>``.  This is the classic tool's rule, so
  ``-d`` may be ``sigs/<name>`` or the top of a sigs repository that keeps
  every release of every platform side by side (``gitian.sigs``:
  ``0.21.2-linux/``, ``0.21.2-win-unsigned/``, ...; ``guix.sigs``: ``29.4/``).
* no ``-d``: ``<home>/sigs/<name>/<release>`` for each descriptor.

Each release directory is matched with the descriptor(s) whose
``<name>-build.assert`` its signers hold (for Guix, each ``<kind>.SHA256SUMS``
kind found); a release holding attestations for none of them is an error
naming it.  With a single descriptor and ``-r``, the release is judged
against it whatever it holds, as the classic tool does (a signer without
its files is "missing result").  Nothing here reads a file: it only lists
directories (:mod:`gitian.sigtree`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from gitian import verify
from gitian.errors import InputError
from gitian.sigsrepo import ChangeSet
from gitian.sigtree import Layout, holdings, looks_like_guix, release_dirs, releases_hint
from gitian.text import printable
from gitian.verdicts import Job


def _jobs_for(
    release_dir: str, release: str, layout: Layout, wanted: frozenset[str] | None
) -> list[Job]:
    """One job per package of ``wanted`` (None: any) the release holds."""
    h = holdings(release_dir, layout, wanted, verify.MAX_SIGNERS)
    return [Job(release_dir, p, release, layout, h.signers_for(p)) for p in h.packages]


def _none_held(release_dir: str, names: Sequence[str], layout: Layout) -> InputError:
    if layout is Layout.GUIX:
        what = "no <kind>.SHA256SUMS attestations"
    else:
        shown = ", ".join(printable(n) for n in names)
        what = f"attestations for none of the descriptors ({shown})"
    return InputError(f"{printable(release_dir)} holds {what}")


def plan(
    names: Sequence[str],
    *,
    destination: str | None,
    sigs_home: Path,
    releases: Sequence[str],
    every: bool,
    layout: Layout,
) -> list[Job]:
    """The jobs for ``-r`` releases, or for ``every`` release (``--all``).

    ``names`` are the descriptors' names (none for Guix); ``sigs_home`` is
    ``<home>/sigs``, where each name's releases are when there is no
    ``destination``.  Raises :class:`InputError` for a release that does not
    exist or holds none of their attestations, and for ``--all`` finding no
    release at all.
    """
    wanted = frozenset(names) if layout is Layout.GITIAN else None
    tops = (
        [(destination, wanted)]
        if destination is not None
        else [(os.fspath(sigs_home / n), frozenset([n])) for n in names]
    )
    jobs: list[Job] = []
    if every:
        for top, want in tops:
            if destination is None and not os.path.isdir(top):
                continue
            for rel in release_dirs(top):
                jobs += _jobs_for(os.path.join(top, rel), rel, layout, want)
        if not jobs:
            where = " or ".join(printable(t) for t, _ in tops)
            raise InputError(f"--all: no release under {where} holds attestations to judge")
        return jobs
    for rel in releases:
        dirs = [(os.path.join(top, rel), want) for top, want in tops]
        if layout is Layout.GITIAN and len(names) == 1:
            # One descriptor: its release, whatever it holds (missing: an error
            # naming the releases there are, from the engine).
            jobs.append(Job(dirs[0][0], names[0], rel, layout))
            continue
        present = [(d, want) for d, want in dirs if os.path.isdir(d)]
        if not present:
            raise InputError(
                f"{' or '.join(printable(d) for d, _ in dirs)} does not exist",
                hint=releases_hint(dirs[0][0]),
            )
        found = [j for d, want in present for j in _jobs_for(d, rel, layout, want)]
        if not found:
            raise _none_held(present[0][0], names, layout)
        jobs += found
    return jobs


def changed_jobs(changes: ChangeSet, destination: str, layout: Layout) -> list[Job]:
    """A job per (release, package) a change added attestations to, judging
    only the signers who added them."""
    return [
        Job(os.path.join(destination, rel), package, rel, layout, frozenset(signers))
        for (rel, package), signers in sorted(changes.added.items())
    ]


def guess_layout(destination: str, releases: Sequence[str], every: bool) -> Layout | None:
    """GUIX when the releases to judge (``every``, or none of them there: any
    under ``destination``) hold ``<signer>/<kind>.SHA256SUMS``; else None."""
    dirs = [] if every else [os.path.join(destination, r) for r in releases]
    dirs = [d for d in dirs if os.path.isdir(d)]
    if not dirs and os.path.isdir(destination):
        dirs = [os.path.join(destination, r) for r in release_dirs(destination)]
    return Layout.GUIX if looks_like_guix(dirs) else None
