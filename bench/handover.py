#!/usr/bin/env python3
"""Cost of the repository gbuild hands to the target (issue 14 item 2).

Makes a gitian home in a temporary directory, checks out COMMIT of REPO
(a local repository: no network) into inputs/src as gbuild does, then times
``inputs.handover``: a clone of that cache holding only the commit, the refs
the command asked for and the objects they reach.  Prints the seconds for the
checkout and, N times, for the hand-over, with the sizes of the cache and of
the repository handed over.

Usage: bench/handover.py REPO [--commit REV] [-n 3] [--fetch-tags]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.fspath(Path(__file__).resolve().parent.parent))

from gitian import inputs  # noqa: E402
from gitian.descriptor import Remote  # noqa: E402
from gitian.home import Home  # noqa: E402


def du(path: Path) -> str:
    out = subprocess.run(["du", "-sh", os.fspath(path)], capture_output=True, text=True).stdout
    return out.split()[0] if out else "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("repo")
    ap.add_argument("--commit", default="HEAD")
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--fetch-tags", action="store_true")
    args = ap.parse_args()
    repo = Path(args.repo).resolve()
    commit = subprocess.run(
        ["git", "-C", os.fspath(repo), "rev-parse", f"{args.commit}^{{commit}}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    opts = inputs.FetchOptions(fetch_tags=args.fetch_tags, quiet=True)
    with tempfile.TemporaryDirectory(prefix="gitian-bench-handover-") as tmp:
        home = Home(Path(tmp))
        home.inputs.mkdir(parents=True)
        t0 = time.monotonic()
        checked = inputs.checkout(home, Remote(url=os.fspath(repo), dir="src", commit=commit), opts)
        print(f"checkout (fetch into inputs/src): {time.monotonic() - t0:.2f} s")
        times = []
        size = "?"
        for _ in range(args.n):
            t0 = time.monotonic()
            with inputs.handover(home, checked) as handed:
                times.append(time.monotonic() - t0)
                size = du(handed / ".git")
        print(f"hand-over: median {statistics.median(times):.2f} s of {args.n} "
              f"(min {min(times):.2f}, max {max(times):.2f})")  # fmt: skip
        print(f"inputs/src/.git: {du(home.inputs / 'src' / '.git')}; handed over .git: {size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
