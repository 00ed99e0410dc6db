#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Output hashing throughput: gbuild's in-process tree hashing, in GB/s.

    bench/hashing.py [--size-mb N] [--dir DIR]

Makes a tree like a build's out/ (a few large archives, many small files),
reads it once so it is in the page cache, then hashes it the way gbuild
hashes build/out and the caches.  Prints wall-clock throughput and
throughput per CPU-second of this process (one core; the machine may be
shared), and, for comparison, the classic tool's way: one ``sha256sum``
process per file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.fspath(Path(__file__).resolve().parent.parent))

from gitian.hashing import hash_tree, tree_bytes  # noqa: E402


def make_tree(root: Path, size_mb: int) -> None:
    block = os.urandom(1 << 20)
    big = max(1, (size_mb * 9 // 10) // 4)
    for i in range(4):  # 90%: four large archives
        with open(root / f"release-{i}.tar.gz", "wb") as f:
            for _ in range(big):
                f.write(block)
    small = root / "share" / "doc"
    small.mkdir(parents=True)
    rest = max(1, size_mb - 4 * big) << 20
    n = 0
    while rest > 0:  # 10%: files of 4 KiB .. 256 KiB
        size = min(rest, 4096 << (n % 7))
        (small / f"file-{n:05d}.txt").write_bytes(block[:size])
        rest -= size
        n += 1
    (root / ".dotfile").write_bytes(b"x")


def measure(root: Path, rounds: int) -> tuple[float, float]:
    best_wall = best_cpu = float("inf")
    for _ in range(rounds):
        w, c = time.perf_counter(), time.process_time()
        hash_tree(root)
        best_wall = min(best_wall, time.perf_counter() - w)
        best_cpu = min(best_cpu, time.process_time() - c)
    return best_wall, best_cpu


def classic(root: Path, limit: int) -> tuple[float, int]:
    files = sorted(p for p in root.rglob("*") if p.is_file())[:limit]
    total = sum(p.stat().st_size for p in files)
    w = time.perf_counter()
    for p in files:
        subprocess.run(["sha256sum", os.fspath(p)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - w, total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="hash this tree instead")
    args = ap.parse_args()
    tmp = None
    if args.dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="gitian-bench-hash-"))
        make_tree(tmp, args.size_mb)
        root = tmp
    else:
        root = args.dir
    try:
        nbytes = tree_bytes(root)
        nfiles = len(hash_tree(root))  # also warms the page cache
        wall, cpu = measure(root, args.rounds)
        gb = nbytes / 1e9
        print(f"tree: {nfiles} files, {nbytes / (1 << 20):.0f} MiB")
        print(f"in-process hashing: {gb / wall:.2f} GB/s wall, {gb / cpu:.2f} GB/s per CPU-second")
        cw, cb = classic(root, 300)
        print(f"classic (one sha256sum per file, first 300 files): {cb / 1e9 / cw:.2f} GB/s wall")
        print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
