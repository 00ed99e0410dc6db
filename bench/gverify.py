#!/usr/bin/env python3
"""gverify against the classic Ruby gverify and a sequential gpg loop.

On the 11-signer Monero release (v0.18.3.1-linux, from tests/data/compat),
with the Monero keys imported into a temporary GNUPGHOME that all of them
use, this runs, interleaved and several times each:

  classic  ruby CHECKOUT/bin/gverify on the same release (with --classic
           CHECKOUT: a checkout of the classic gitian-builder, not part of
           this repository; the row is skipped without it)
  gverify  the installed gverify console script
  loop     sh -c 'for s in REL/*/; do gpg --verify S.sig S; done'
  floor    python -c 'import click, yaml': what any tool on the libraries the
           project names pays before it does anything

and prints the median wall time of each, their CPU time (user+sys, children
included), and the ratios classic / gverify (the goal is at least 3) and
gverify / loop.

Usage: bench/gverify.py [-n REPS] [--classic CHECKOUT] [--gverify PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from timing import timed

ROOT = Path(__file__).resolve().parent.parent
COMPAT = ROOT / "tests" / "data" / "compat"
PACKAGE = "monero-linux-0.18"
RELEASE = "v0.18.3.1-linux"
DESCRIPTOR = COMPAT / "descriptors" / "v0.18.3.1-gitian-linux.yml"
KEYS = COMPAT / "keys" / "monero"

LOOP = 'for s in "$1"/*/; do gpg --verify "$s$2-build.assert.sig" "$s$2-build.assert"; done'


def gverify_command(explicit: str | None) -> list[str]:
    if explicit:
        return [explicit]
    # The console script pip installed next to this interpreter.
    script = Path(sys.executable).parent / "gverify"
    if script.is_file():
        return [str(script)]
    found = shutil.which("gverify")
    return [found] if found else [sys.executable, "-m", "gitian.cli.gverify"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--reps", type=int, default=15)
    ap.add_argument("--gverify", default=None, help="gverify program to time")
    ap.add_argument("--classic", type=Path, default=None, help="checkout of the classic tool")
    args = ap.parse_args()

    sigs = COMPAT / "sigs" / PACKAGE
    release_dir = sigs / RELEASE
    signers = sorted(p.name for p in release_dir.iterdir() if p.is_dir())
    release_args = ["-d", str(sigs), "-r", RELEASE, str(DESCRIPTOR)]
    commands = {
        "gverify": [*gverify_command(args.gverify), *release_args],
        "loop": ["sh", "-c", LOOP, "sh", str(release_dir), PACKAGE],
        "floor": [sys.executable, "-c", "import click, yaml"],
    }
    if args.classic is not None:
        classic = args.classic / "bin" / "gverify"
        ruby = shutil.which("ruby")
        if classic.is_file() and ruby:
            commands = {"classic": [ruby, str(classic), *release_args], **commands}
        else:
            print(f"classic: skipped ({classic} or ruby missing)")
    home = Path(tempfile.mkdtemp(prefix="bench-gverify-"))
    try:
        home.chmod(0o700)
        env = dict(os.environ, GNUPGHOME=str(home), LANG="C.UTF-8")
        env.pop("LC_ALL", None)
        # As installed: byte-compiled once (PYTHONDONTWRITEBYTECODE would make
        # every run compile every module again).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        import gitian

        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(Path(gitian.__file__).parent)],
            capture_output=True,
            check=False,
        )
        base = ["gpg", "--batch", "--disable-dirmngr"]
        keys = sorted(str(p) for p in KEYS.glob("*.asc"))
        subprocess.run([*base, "--import", *keys], env=env, capture_output=True, check=True)
        subprocess.run([*base, "--check-trustdb"], env=env, capture_output=True, check=False)
        # Warm up (page cache, byte-compiled modules), and check they all succeed.
        for name, argv in commands.items():
            _, _, (rc,) = timed([argv], env)
            if rc != 0:
                print(f"{name} failed (exit {rc}): {' '.join(argv)}", file=sys.stderr)
                return 1
        wall: dict[str, list[float]] = {k: [] for k in commands}
        cpu: dict[str, list[float]] = {k: [] for k in commands}
        for _ in range(args.reps):
            for name, argv in commands.items():
                w, c, _ = timed([argv], env)
                wall[name].append(w)
                cpu[name].append(c)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)

    print(f"release: {PACKAGE} {RELEASE} ({len(signers)} signers), {args.reps} runs each, "
          f"{os.cpu_count()} CPUs")
    med = {k: statistics.median(v) for k, v in wall.items()}
    for name in commands:
        print(
            f"{name:8} median {med[name] * 1000:7.1f} ms  (min {min(wall[name]) * 1000:6.1f}), "
            f"cpu {statistics.median(cpu[name]) * 1000:6.1f} ms"
        )
    if "classic" in med:
        print(f"classic / gverify: {med['classic'] / med['gverify']:.2f}  (goal: at least 3)")
    print(f"gverify / loop:    {med['gverify'] / med['loop']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
