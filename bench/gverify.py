#!/usr/bin/env python3
"""Wall time of gverify against a bare shell loop of ``gpg --verify``.

On the 11-signer Monero release (v0.18.3.1-linux, from tests/data/compat), with
the Monero keys imported into a temporary GNUPGHOME that both sides use, this
runs, interleaved and several times each:

  loop     sh -c 'for s in REL/*/; do gpg --verify S.sig S; done'
  gverify  the installed gverify console script on the same release

and prints the median of each and their ratio (the goal is at most 1.5).
For scale it also times the bare interpreter (``python -c pass``, with the
same site start-up a console script pays) in the same interleaved runs, and
prints gverify's time without it.  The package's modules are byte-compiled
first, as an installed package is (PYTHONDONTWRITEBYTECODE would otherwise
make every run compile them again).
With ``--baseline PATH`` another gverify program (say, an older checkout's)
is timed in the same interleaved runs, for a before/after comparison.
Usage: bench/gverify.py [-n REPS] [--gverify PATH] [--baseline PATH]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    # The console script pip installed next to this interpreter (not a
    # version-manager shim in front of it, which would time the shim).
    script = Path(sys.executable).parent / "gverify"
    if script.is_file():
        return [str(script)]
    found = shutil.which("gverify")
    if found:
        return [found]
    return [sys.executable, "-m", "gitian.cli.gverify"]


def _interpreter(cmd: list[str]) -> str:
    """The Python that runs ``cmd`` (a console script's #! line, else ours)."""
    if len(cmd) == 1:
        try:
            with open(cmd[0], "rb") as f:
                first = f.readline()
            if first.startswith(b"#!") and b"python" in first:
                return first[2:].decode().split()[0]
        except OSError:
            pass
    return sys.executable


CPU: dict[str, list[float]] = {}


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall time and exit status; the CPU time (user+sys, children included)
    is collected in CPU under the command's first word, since wall time on a
    busy machine says as much about the neighbours as about the command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    CPU.setdefault(" ".join(argv[:3]), []).append(cpu)
    return wall, proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--reps", type=int, default=21)
    ap.add_argument("--gverify", default=None, help="gverify program to time")
    ap.add_argument("--baseline", default=None, help="another gverify program to time alongside")
    args = ap.parse_args()

    sigs = COMPAT / "sigs" / PACKAGE
    release_dir = sigs / RELEASE
    signers = sorted(p.name for p in release_dir.iterdir() if p.is_dir())
    with tempfile.TemporaryDirectory(prefix="bench-gverify-") as home:
        env = dict(os.environ, GNUPGHOME=home, LANG="C.UTF-8")
        env.pop("LC_ALL", None)
        keys = sorted(str(p) for p in KEYS.glob("*.asc"))
        base = ["gpg", "--batch", "--no-autostart", "--disable-dirmngr"]
        subprocess.run([*base, "--import", *keys], env=env, capture_output=True, check=True)
        subprocess.run([*base, "--check-trustdb"], env=env, capture_output=True, check=False)

        import gitian  # noqa: PLC0415 - only to find the package's directory

        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(Path(gitian.__file__).parent)],
            capture_output=True,
            check=False,
        )
        loop = ["sh", "-c", LOOP, "sh", str(release_dir), PACKAGE]
        bare = [_interpreter(gverify_command(args.gverify)), "-c", "pass"]
        gv = [
            *gverify_command(args.gverify),
            "-d",
            str(sigs),
            "-r",
            RELEASE,
            str(DESCRIPTOR),
        ]
        base_gv = [args.baseline, *gv[1:]] if args.baseline else None
        # Warm up (page cache, trust database), and check they all succeed.
        for argv in (loop, gv, *([base_gv] if base_gv else [])):
            _, rc = timed(argv, env)
            if rc != 0:
                print(f"failed (exit {rc}): {' '.join(argv)}", file=sys.stderr)
                return 1
        loop_t: list[float] = []
        gv_t: list[float] = []
        bare_t: list[float] = []
        base_t: list[float] = []
        for _ in range(args.reps):
            loop_t.append(timed(loop, env)[0])
            gv_t.append(timed(gv, env)[0])
            bare_t.append(timed(bare, env)[0])
            if base_gv:
                base_t.append(timed(base_gv, env)[0])

    lm, gm, bm = (statistics.median(t) for t in (loop_t, gv_t, bare_t))
    print(f"release:  {PACKAGE} {RELEASE} ({len(signers)} signers), {args.reps} runs each")
    print(f"gverify:  {' '.join(gv[:1])}")
    print(f"loop     median {lm * 1000:7.1f} ms  (min {min(loop_t) * 1000:.1f})")
    print(f"gverify  median {gm * 1000:7.1f} ms  (min {min(gv_t) * 1000:.1f})")
    print(f"python   median {bm * 1000:7.1f} ms  (min {min(bare_t) * 1000:.1f}; {bare[0]} -c pass)")
    lc, gc, bc = (statistics.median(CPU[" ".join(a[:3])]) for a in (loop, gv, bare))
    print(
        f"cpu      loop {lc * 1000:.1f} ms, gverify {gc * 1000:.1f} ms, python {bc * 1000:.1f} ms"
    )
    print(f"ratio    {gm / lm:.2f}  (goal: at most 1.5)")
    print(f"ratio without interpreter start-up: {(gm - bm) / lm:.2f}")
    if base_t:
        bgm = statistics.median(base_t)
        print(
            f"baseline median {bgm * 1000:7.1f} ms  (min {min(base_t) * 1000:.1f}; "
            f"{args.baseline}): ratio {bgm / lm:.2f}, without start-up {(bgm - bm) / lm:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
