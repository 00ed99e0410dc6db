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

import io
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from examplehome import ROOT, arguments, example_home  # noqa: E402

from gitian import log  # noqa: E402
from gitian.build import Builder, BuildOptions  # noqa: E402
from gitian.descriptor import load  # noqa: E402
from gitian.rounds import RoundBuilder, build_rounds  # noqa: E402
from gitian.variations import ALL  # noqa: E402

GOAL = 2.2


def main() -> int:
    ap = arguments(__doc__.splitlines()[0])
    ap.add_argument(
        "--no-layer-cache",
        action="store_true",
        help="install the packages in every build, as gbuild --no-layer-cache",
    )
    args = ap.parse_args()
    home, target = example_home(args.home, args.backend)
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
    label = " (no layers)" if args.no_layer_cache else ""
    print(
        f"{args.backend}{label}: one build {one:.2f}s, --rounds 2 --vary {two:.2f}s (medians of "
        f"{args.runs}): {ratio:.2f}x a single build ({verdict} the goal of {GOAL}x); "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
