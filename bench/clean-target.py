#!/usr/bin/env python3
"""Time to a usable clean target, per container backend.

For each backend, N times: stop whatever runs, make a clean target from the
base (``reset``: throw away the last overlay upper layer), ``start`` it, and
run the first command (``true`` as the build user).  Prints the median of
each step and of the whole, in milliseconds.  The library is called directly,
so Python's start-up (≈0.2 s per libexec tool) is not counted.

Needs root and a gitian home holding base-SUITE-ARCH/ (make-base-vm --bwrap).
Usage: bench/clean-target.py --workdir HOME [-n 10] [--backend bwrap --backend lxc]
       [--suite bookworm] [--arch amd64] [--distro debian]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, os.fspath(Path(__file__).resolve().parent.parent))

from gitian.home import Home  # noqa: E402
from gitian.targets import backend_class, make_target  # noqa: E402
from gitian.targets.base import TargetConfig  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--backend", action="append", default=None)
    ap.add_argument("--suite", default="bookworm")
    ap.add_argument("--arch", default="amd64")
    ap.add_argument("--distro", default="debian")
    args = ap.parse_args()
    home = Home(Path(args.workdir).resolve())
    backends = args.backend or ["bwrap", "lxc"]
    print(f"clean target + start + first command, median of {args.n} (ms)")
    print(f"{'backend':10} {'reset':>8} {'start':>8} {'1st cmd':>8} {'total':>8} {'stop':>8}")
    for name in backends:
        reason = backend_class(name).unavailable_reason()
        if reason:
            print(f"{name:10} unavailable: {reason}")
            continue
        cfg = TargetConfig(home=home, suite=args.suite, arch=args.arch, distro=args.distro)
        t = make_target(name, cfg)
        steps: dict[str, list[float]] = {k: [] for k in ("reset", "start", "cmd", "total", "stop")}
        t.stop()
        try:
            for _ in range(args.n):
                t0 = time.perf_counter()
                t.reset()
                t1 = time.perf_counter()
                t.start()
                t.wait_ready()
                t2 = time.perf_counter()
                t.run(["true"])
                t3 = time.perf_counter()
                t.stop()
                t4 = time.perf_counter()
                for k, v in (
                    ("reset", t1 - t0),
                    ("start", t2 - t1),
                    ("cmd", t3 - t2),
                    ("total", t3 - t0),
                    ("stop", t4 - t3),
                ):
                    steps[k].append(v * 1000)
        finally:
            t.stop()
        m = {k: statistics.median(v) for k, v in steps.items()}
        print(
            f"{name:10} {m['reset']:8.1f} {m['start']:8.1f} {m['cmd']:8.1f} "
            f"{m['total']:8.1f} {m['stop']:8.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
