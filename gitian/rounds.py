"""``gbuild --rounds N [--vary]``: is the build deterministic, before anyone signs?

The descriptor is built N times, each round in a fresh target from the same
base, from inputs recorded once; with ``--vary`` every round after the first
changes what a deterministic build must not depend on
(:mod:`gitian.variations`).  Each round's outputs and logs stay in
``var/rounds/<n>/``.

Identical out_manifests: the first round's outputs become ``build/out`` and
the result file is written as a plain gbuild writes it.  Different: no result
file; gbuild says which files differ, rebuilds with one variation at a time to
name the one(s) responsible (:func:`narrow`), and runs diffoscope on each
differing file (:mod:`gitian.diffoscope`), keeping its reports in
``var/rounds/diffoscope/``.

Every round uses the caches read-only (as ``-o``): each must start from the
same caches.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gitian import buildscript, diffoscope, hashing, log, variations
from gitian.build import (
    Builder,
    BuildOptions,
    BuildResult,
    ScriptCommand,
    configurations,
)
from gitian.errors import BuildError, GitianError, Interrupted, UsageError
from gitian.home import Home
from gitian.run import remove_tree
from gitian.targets.base import Target
from gitian.variations import Applied, Variation

Vary = frozenset[Variation]


class NotDeterministic(BuildError):
    """The rounds' outputs differ; the message explains how."""


@dataclass(frozen=True)
class Round:
    """One finished round: its outputs' hashes and what it varied."""

    name: str
    dir: Path
    outputs: dict[str, str]  # relative path -> sha256
    base_manifests: list[tuple[str, str]]
    varied: Vary  # what every configuration of the round applied

    @property
    def out(self) -> Path:
        return self.dir / "out"


def differing(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """The files whose hashes differ, or that only one side has, sorted."""
    return sorted(p for p in a.keys() | b.keys() if a.get(p) != b.get(p))


# -- narrowing -----------------------------------------------------------------


@dataclass(frozen=True)
class Cause:
    """Why one file differs.

    ``kind``: ``each`` (every variation in ``variations`` changes it on its
    own), ``together`` (only with all of ``variations`` varied at once: no
    single one changes it), ``unvaried`` (it differs with nothing varied: the
    build itself is not deterministic).
    """

    kind: str
    variations: Vary = frozenset()

    def describe(self) -> str:
        vs = variations.names(self.variations)
        if self.kind == "each":
            if len(self.variations) == 1:
                return f"caused by {vs} (rebuilt with each variation alone, only {vs} changes it)"
            return f"caused by each of {vs} (each alone changes it)"
        if self.kind == "together":
            return f"caused by {vs} together (no single variation changes it)"
        return (
            "differs even with nothing varied: the build itself is not deterministic "
            "(the time of the build, randomness, parallelism...)"
        )


Rebuild = Callable[[Vary], set[str]]
"""Builds once with the given variations; returns the files that differ from round 1."""


def narrow(varied: Vary, files: Sequence[str], rebuild: Rebuild) -> dict[str, Cause]:
    """Name the variation(s) responsible for each differing file.

    Rebuild with each variation of ``varied`` alone.  A file that one or more
    single variations change is theirs; if every single one changes it (or
    only one was varied) a rebuild with nothing varied tells a build that is
    not deterministic at all.  A file no single variation changes needs
    several at once: rebuilding with all but one, the variations whose removal
    makes it go away are the ones it needs together.
    """
    memo: dict[Vary, set[str]] = {}

    def build(vs: Vary) -> set[str]:
        if vs not in memo:
            memo[vs] = rebuild(vs)
        return memo[vs]

    if not varied:
        return {f: Cause("unvaried") for f in files}
    memo[varied] = set(files)  # the varied round itself
    single = {v: build(frozenset({v})) for v in sorted(varied)}
    by_file = {f: frozenset(v for v in varied if f in single[v]) for f in files}
    plain = build(frozenset()) if any(s == varied for s in by_file.values()) else set()
    causes: dict[str, Cause] = {}
    for f in files:
        if f in plain:
            causes[f] = Cause("unvaried")
        elif by_file[f]:
            causes[f] = Cause("each", by_file[f])
        else:
            needed = frozenset(v for v in varied if f not in build(varied - {v}))
            causes[f] = Cause("together", needed or varied)
    return causes


# -- the builds ----------------------------------------------------------------


class RoundBuilder(Builder):
    """A :class:`Builder` whose outputs go to a round's directory and whose
    build script may run with variations."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # every round must start from the same caches
        self.opts = replace(self.opts, cache_read_only=True)
        self.round_dir = self.home.var / "rounds" / "1"
        self.wanted: Vary = frozenset()
        self.applied: list[Applied] = []

    @property
    def results_dir(self) -> Path:
        return self.round_dir

    def packaged_target(
        self, stack: contextlib.ExitStack, suite: str, arch: str, *, keep: bool = False
    ) -> tuple[Target, bytes]:
        target, manifest = super().packaged_target(stack, suite, arch, keep=keep)
        if self.wanted:
            # in the build's own target, after the package step (from a layer
            # or not): nothing of this can reach the manifest or a layer
            with self.step(f"Preparing the variations ({variations.names(self.wanted)})"):
                self.applied.append(variations.setup(target, self.wanted))
        return target, manifest

    def script_params(self, arch: str, reference: str) -> buildscript.ScriptParams:
        params = super().script_params(arch, reference)
        if not self.wanted:
            return params
        return variations.script_params(params, self.applied[-1])

    def script_command(self, target: Target, personality: str) -> ScriptCommand:
        if not self.wanted:
            return super().script_command(target, personality)
        c = variations.command(target, self.applied[-1], personality, self.opts.num_procs)
        return ScriptCommand(c.argv, "root", c.env)

    def build_round(self, name: str, wanted: Vary, reference: str) -> Round:
        """Every configuration once, into var/rounds/<name>/."""
        d = self.home.var / "rounds" / name
        remove_tree(d)
        d.mkdir(parents=True)
        self.round_dir, self.wanted, self.applied = d, wanted, []
        what = f" (varied: {variations.names(wanted)})" if wanted else ""
        log.info(f"=== Round {name}{what} ===")
        base_manifests = []
        for suite, arch in configurations(self.desc):
            log.info(f"--- Building for {suite} {arch} ---")
            try:
                manifest = self.build_configuration(suite, arch, reference)
            except GitianError as e:
                if not isinstance(e, Interrupted):
                    e.message = f"round {name}{what}: {e.message}"
                raise
            base_manifests.append((f"{suite}-{arch}", manifest))
            for p in (self.install_log, self.build_log, self.home.var / "build-script"):
                if p.exists():
                    p.replace(d / f"{suite}-{arch}.{p.name}")
        varied = frozenset(wanted)
        for a in self.applied:
            varied &= a.variations
        entries = hashing.hash_tree(d / "out", where=f"var/rounds/{name}/out")
        return Round(name, d, {rel: sha for sha, rel in entries}, base_manifests, varied)


def check_options(options: BuildOptions, count: int) -> None:
    """Refuse what ``--rounds`` cannot do (before anything starts)."""
    if count < 2:
        raise UsageError("--rounds needs 2 or more")
    if options.skip_image:
        raise UsageError("--rounds builds every round in a fresh target; it cannot take -i")
    if options.skip_cleanup:
        raise UsageError(
            "--rounds stops every round's target; it cannot take --skip-cleanup "
            "(each round's outputs and logs stay in var/rounds/)"
        )


def build_rounds(builder: RoundBuilder, count: int, vary: Vary) -> BuildResult:
    """The whole flow of ``gbuild --rounds count [--vary]`` (see the module docstring)."""
    check_options(builder.opts, count)
    home = builder.home
    builder.check()
    builder.prepare_home()
    remove_tree(home.var / "rounds")
    in_manifest, reference = builder.record_inputs()
    first = builder.build_round("1", frozenset(), reference)
    rounds = [builder.build_round(str(n), vary, reference) for n in range(2, count + 1)]
    bad = [r for r in rounds if differing(first.outputs, r.outputs)]
    packages = [r for r in rounds if r.base_manifests != first.base_manifests]
    if not bad and not packages:
        _link_tree(first.out, home.build / "out")
        what = f", every round after the first varied ({variations.names(vary)})" if vary else ""
        log.info(f"all {count} rounds gave the same out_manifest{what}")
        return builder.write_report(in_manifest, first.base_manifests)
    raise explain(builder, first, bad or packages, reference)


def explain(
    builder: RoundBuilder, first: Round, bad: list[Round], reference: str
) -> NotDeterministic:
    """Narrow down and describe how ``bad`` rounds differ from ``first``."""
    worst = bad[0]
    files = differing(first.outputs, worst.outputs)
    lines = []
    head = f"round {worst.name}"
    head += f" (varied: {variations.names(worst.varied)})" if worst.varied else ""
    head += " differs from round 1"
    if worst.base_manifests != first.base_manifests:
        lines.append(
            "the installed packages differed between the rounds (did the archive change during "
            f"the build?): compare var/rounds/1/ and var/rounds/{worst.name}/"
        )
    causes: dict[str, Cause] = {}
    if files:
        if worst.varied:
            log.info(f"narrowing it down: rebuilding with one variation at a time ({len(files)} "
                     f"differing file{'s' if len(files) != 1 else ''})")  # fmt: skip

            def rebuild(vs: Vary) -> set[str]:
                name = _round_name(vs, worst.varied)
                r = builder.build_round(name, vs, reference)
                return set(differing(first.outputs, r.outputs))

            causes = narrow(worst.varied, files, rebuild)
        else:
            causes = {f: Cause("unvaried") for f in files}
    lines += describe_files(first, worst, files, causes, builder.home)
    total = len(first.outputs.keys() | worst.outputs.keys())
    msg = f"not deterministic: {head} in {len(files)} of {total} output files"
    if not files:
        msg = f"not deterministic: {head} in the installed packages"
    return NotDeterministic(
        "\n".join([msg, *lines]),
        hint=f"each round's outputs and logs are in {builder.home.var / 'rounds'}/<round>/; "
        "no result file was written",
    )


def describe_files(
    first: Round, other: Round, files: Sequence[str], causes: dict[str, Cause], home: Home
) -> list[str]:
    """One block per differing file: the cause, diffoscope's first difference
    and where its reports are."""
    both = [f for f in files if f in first.outputs and f in other.outputs]
    report = None
    lines: list[str] = []
    if both and diffoscope.available():
        dest = home.var / "rounds" / "diffoscope" / f"1-vs-{other.name}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        report = diffoscope.compare(
            first.out, other.out, both, dest, ("round-1", f"round-{other.name}")
        )
        if report.error:
            lines.append(f"diffoscope failed: {report.error}")
    elif both:
        lines.append(
            f"diffoscope is not installed, so only the names of the differing files follow "
            f"({diffoscope.INSTALL_HINT})"
        )
    for f in files:
        cause = causes.get(f)
        where = ""
        if f not in first.outputs:
            where = f" (only round {other.name} has it)"
        elif f not in other.outputs:
            where = " (only round 1 has it)"
        lines.append(f"  {f}{where}: {cause.describe() if cause else 'differs'}")
        if report is not None and f in report.summaries:
            lines.append(f"      first difference: {report.summaries[f] or '(see the report)'}")
    if report is not None and not report.error:
        rel = report.text.relative_to(home.root)
        lines.append(f"diffoscope's full report: {rel} (and {rel.with_suffix('.html')})")
    return lines


def _round_name(vs: Vary, all_varied: Vary) -> str:
    """var/rounds/<name> of a narrowing rebuild."""
    if not vs:
        return "plain"
    if len(vs) == 1:
        return f"only-{next(iter(vs)).value}"
    left = all_varied - vs
    if len(left) == 1:
        return f"without-{next(iter(left)).value}"
    return "varied-" + "-".join(v.value for v in Variation if v in vs)


def _link_tree(src: Path, dest: Path) -> None:
    """``dest`` as a copy of ``src`` made of hard links (a copy where they fail)."""

    def link(s: str, d: str) -> None:
        try:
            os.link(s, d, follow_symlinks=False)
        except OSError:
            shutil.copy2(s, d, follow_symlinks=False)

    remove_tree(dest)
    if src.is_dir():
        shutil.copytree(src, dest, symlinks=True, copy_function=link)
