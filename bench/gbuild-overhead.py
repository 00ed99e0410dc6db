#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""gbuild's own overhead on the example descriptor, with an existing base.

    bench/gbuild-overhead.py [--home DIR] [--backend bwrap|lxc] [--runs N]

Needs root.  Uses (and, the first time, makes) a Debian bookworm amd64 base
in DIR (default /tmp/gitian-bench-home), prepares the example's inputs, then
prints:

* the time for a clean target: reset + start + first command + stop;
* for each of N builds of descriptors/example.yml (after one warm-up build
  that fills the shared .deb cache): the wall time, the time spent installing
  packages and in the descriptor's script, and what is left - gbuild's own
  overhead - plus the steps that make it up;
* the command-line start-up (Python and imports), which a gbuild run adds.

The classic tool spends over 30 s waiting for its VM alone; the goal here is
an overhead under 3 s.  The machine may be shared: the load average is shown.
"""

from __future__ import annotations

import io
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from examplehome import ROOT, arguments, example_home  # noqa: E402

from gitian import log  # noqa: E402
from gitian.build import Builder, BuildOptions, overhead  # noqa: E402
from gitian.descriptor import load  # noqa: E402


def main() -> int:
    ap = arguments(__doc__.splitlines()[0])
    args = ap.parse_args()
    home, target = example_home(args.home, args.backend)

    # -- a clean target ---------------------------------------------------------
    times = []
    for _ in range(5):
        t = target()
        t0 = time.monotonic()
        t.stop()
        t.reset()
        t.start()
        try:
            t.wait_ready()
            t.run(["true"])
        finally:
            t.stop()
        times.append(time.monotonic() - t0)
    print(
        f"clean target ({args.backend}): {statistics.median(times):.2f}s median "
        f"(reset + start + first command + stop; min {min(times):.2f}s)"
    )

    # -- gbuild on the example ----------------------------------------------------
    desc = load(ROOT / "descriptors" / "example.yml")
    log.set_quiet(True)

    def build() -> tuple[float, list[tuple[str, float, bool]]]:
        t0 = time.monotonic()
        res = Builder(
            desc, home, BuildOptions(quiet=True), lambda s, a: target(), out=io.StringIO()
        ).run()
        return time.monotonic() - t0, res.timings

    build()  # warm-up: fills the shared .deb cache
    rows = []
    for i in range(args.runs):
        total, timings = build()
        external = total - overhead(timings, total)
        rows.append((total, external, overhead(timings, total), timings))
        print(
            f"build {i + 1}: {total:.2f}s wall, {external:.2f}s installing packages and "
            f"in the script, overhead {total - external:.2f}s"
        )
    best = min(rows, key=lambda r: r[2])
    own = sorted(((t, title) for title, t, ext in best[3] if not ext), reverse=True)
    print("overhead steps (fastest run): " + ", ".join(f"{title} {t:.2f}s" for t, title in own[:6]))

    t0 = time.monotonic()
    subprocess.run([sys.executable, os.fspath(ROOT / "bin" / "gbuild"), "--help"],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    startup = time.monotonic() - t0
    med = statistics.median(r[2] for r in rows)
    print(f"command-line start-up: {startup:.2f}s")
    print(
        f"gbuild overhead on the example: {med:.2f}s median in-process, "
        f"{med + startup:.2f}s with start-up (goal: under 3 s)"
    )
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
