#!/usr/bin/env python3
"""A whole sigs history in one ``gverify --all`` run, against a bare gpg loop
and the classic Ruby gverify run once per release.

By default the tree is Monero's gitian.sigs (tests/data/trees, 208 releases,
1,314 signed asserts, 23 descriptor names) with its gitian-pubkeys imported
into one throwaway GNUPGHOME that every contender uses.  Runs, interleaved,
``-n`` times each:

  gverify  gverify --all -d TREE <one name-only descriptor per name found>
  loop     sh -c 'for a in TREE/*/*/*-build.assert; do gpg --verify "$a.sig" "$a"; done'
  classic  ruby CHECKOUT/bin/gverify -d TREE -r REL DESC, once per release
           (with --classic CHECKOUT, a checkout of the classic gitian-builder;
           its keyserver look-up fails at once, offline)

and prints the median wall time of each, their CPU time (user+sys, children
included), and the ratios gverify / loop (goal: at most 1) and classic /
gverify (goal: at least 4).

Usage: bench/history.py [-n REPS] [--classic CHECKOUT] [--tree DIR --keys DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from timing import timed

ROOT = Path(__file__).resolve().parent.parent
MONERO = ROOT / "tests" / "data" / "trees" / "monero-gitian.sigs.tar.xz"
LOOP = 'for a in "$1"/*/*/*-build.assert; do gpg --verify "$a.sig" "$a"; done'


def releases(tree: Path) -> list[tuple[str, str]]:
    """(release directory, descriptor name) for every release holding asserts."""
    found = set()
    for a in tree.glob("*/*/*-build.assert"):
        found.add((a.parent.parent.name, a.name.removesuffix("-build.assert")))
    return sorted(found)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--reps", type=int, default=3)
    ap.add_argument("--classic", type=Path, default=None, help="checkout of the classic tool")
    ap.add_argument("--tree", type=Path, default=None, help="a sigs tree (default: Monero's)")
    ap.add_argument("--keys", type=Path, default=None, help="its public keys (a directory)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-history-"))
    try:
        if args.tree is None:
            with tarfile.open(MONERO) as t:
                t.extractall(work / "tree", filter="data")
            tree, keys = work / "tree", work / "tree" / "gitian-pubkeys"
        else:
            tree, keys = args.tree, args.keys or args.tree / "gitian-pubkeys"
        rels = releases(tree)
        pairs = sum(1 for _ in tree.glob("*/*/*-build.assert"))
        desc = work / "descriptors"
        desc.mkdir()
        for name in sorted({n for _, n in rels}):
            (desc / f"{name}.yml").write_text(f"name: {name}\n")
        home = work / "gnupg"
        home.mkdir(mode=0o700)
        env = dict(os.environ, GNUPGHOME=str(home), LANG="C.UTF-8")
        env.pop("LC_ALL", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        base = ["gpg", "--batch", "--disable-dirmngr"]
        key_files = sorted(str(p) for p in keys.iterdir() if p.suffix in (".asc", ".gpg", ".pgp"))
        subprocess.run([*base, "--import", *key_files], env=env, capture_output=True, check=True)
        subprocess.run([*base, "--check-trustdb"], env=env, capture_output=True, check=False)
        gverify = str(Path(sys.executable).parent / "gverify")
        descs = sorted(str(p) for p in desc.iterdir())
        contenders: dict[str, list[list[str]]] = {
            "gverify": [[gverify, "--all", "-d", str(tree), *descs]],
            "loop": [["sh", "-c", LOOP, "sh", str(tree)]],
        }
        if args.classic is not None:
            classic, ruby = args.classic / "bin" / "gverify", shutil.which("ruby")
            if classic.is_file() and ruby:
                contenders["classic"] = [
                    [ruby, str(classic), "-d", str(tree), "-r", rel, str(desc / f"{name}.yml")]
                    for rel, name in rels
                ]
            else:
                print(f"classic: skipped ({classic} or ruby missing)")
        wall: dict[str, list[float]] = {k: [] for k in contenders}
        cpu: dict[str, list[float]] = {k: [] for k in contenders}
        codes: dict[str, set[int]] = {k: set() for k in contenders}
        timed([[gverify, "--help"]], env)  # byte-compile, warm the page cache
        for _ in range(args.reps):
            for name, commands in contenders.items():
                w, c, rc = timed(commands, env)
                wall[name].append(w)
                cpu[name].append(c)
                codes[name].update(rc)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(work / "gnupg"), "--kill", "all"], check=False)
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"tree: {args.tree or MONERO.name}: {len(rels)} releases, {pairs} signed asserts; "
        f"{args.reps} runs each, {os.cpu_count()} CPUs"
    )
    med = {k: statistics.median(v) for k, v in wall.items()}
    for name in contenders:
        print(
            f"{name:8} median {med[name]:7.2f} s  (min {min(wall[name]):6.2f}), "
            f"cpu {statistics.median(cpu[name]):6.2f} s, exit statuses {sorted(codes[name])}"
        )
    print(f"gverify / loop:    {med['gverify'] / med['loop']:.2f}  (goal: at most 1)")
    if "classic" in med:
        print(f"classic / gverify: {med['classic'] / med['gverify']:.2f}  (goal: at least 4)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
