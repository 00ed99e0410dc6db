#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The cost of ``gbuild --rounds 2 --vary`` on the example, against one build.

    bench/determinism.py [--home DIR] [--backend bwrap|lxc] [--runs N] [--no-layer-cache]

Needs root.  Uses (and, the first time, makes) a Debian bookworm amd64 base
in DIR (default /tmp/gitian-bench-home), prepares the example's inputs, warms
up (one build fills the .deb cache, one varied run fetches libfaketime and
disorderfs into it), then times N plain builds and N ``--rounds 2 --vary``
runs, alternating, and prints the medians and their ratio (goal: under 2.2).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.fspath(ROOT))

from gitian import log  # noqa: E402
from gitian.build import Builder, BuildOptions  # noqa: E402
from gitian.descriptor import load  # noqa: E402
from gitian.home import Home  # noqa: E402
from gitian.rounds import RoundBuilder, build_rounds  # noqa: E402
from gitian.targets import backend_class, make_target  # noqa: E402
from gitian.targets.base import BaseOptions, Target, TargetConfig  # noqa: E402
from gitian.variations import ALL  # noqa: E402

SUITE, ARCH, DISTRO = "bookworm", "amd64", "debian"
GOAL = 2.2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, default=Path("/tmp/gitian-bench-home"))
    ap.add_argument("--backend", default="bwrap", choices=["bwrap", "lxc"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-layer-cache", action="store_true",
                    help="install the packages in every build, as gbuild --no-layer-cache")  # fmt: skip
    args = ap.parse_args()
    reason = backend_class(args.backend).unavailable_reason(for_base=True)
    if reason:
        print(f"cannot run the {args.backend} backend here: {reason}", file=sys.stderr)
        return 2
    home = Home(args.home.resolve())
    home.root.mkdir(parents=True, exist_ok=True)

    def target(suite: str = SUITE, arch: str = ARCH) -> Target:
        config = TargetConfig(home=home, suite=suite, arch=arch, distro=DISTRO)
        return make_target(args.backend, config)

    if not (home.base(SUITE, ARCH) / "etc").is_dir():
        t0 = time.monotonic()
        target().make_base(BaseOptions(distro=DISTRO, suite=SUITE, arch=ARCH))
        print(f"made the base in {time.monotonic() - t0:.1f}s (once)")
    subprocess.run(
        [os.fspath(ROOT / "descriptors" / "prepare-example"), os.fspath(home.root)],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    desc = load(ROOT / "descriptors" / "example.yml")
    log.set_quiet(True)
    opts = BuildOptions(quiet=True, layer_cache=not args.no_layer_cache)

    def plain() -> float:
        t0 = time.monotonic()
        Builder(desc, home, opts, target, out=io.StringIO()).run()
        return time.monotonic() - t0

    def varied() -> float:
        t0 = time.monotonic()
        build_rounds(RoundBuilder(desc, home, opts, target, out=io.StringIO()), 2, ALL)
        return time.monotonic() - t0

    plain()  # warm-up: the .deb cache
    varied()  # warm-up: libfaketime and disorderfs in the cache
    singles, rounds = [], []
    for i in range(args.runs):
        singles.append(plain())
        rounds.append(varied())
        print(f"run {i + 1}: one build {singles[-1]:.2f}s, --rounds 2 --vary {rounds[-1]:.2f}s")
    one, two = statistics.median(singles), statistics.median(rounds)
    ratio = two / one
    verdict = "within" if ratio < GOAL else "OVER"
    print(
        f"{args.backend}{' (no layers)' if args.no_layer_cache else ''}: one build {one:.2f}s, --rounds 2 --vary {two:.2f}s (medians of "
        f"{args.runs}): {ratio:.2f}x a single build ({verdict} the goal of {GOAL}x); "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
