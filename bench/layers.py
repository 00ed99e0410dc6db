#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""A first build and a rebuild from the installed-packages layer, per backend.

    bench/layers.py [--home DIR] [--backend bwrap|lxc|docker|kvm ...]

Needs root.  Builds a descriptor with a heavy package set - the mingw-w64
cross toolchain and cmake - that cross-compiles a hello.c for Windows and
configures and builds a tiny CMake project, with gbuild as a user runs it
(one process per build).  For each backend it first removes that backend's
layers in DIR (default /tmp/gitian-bench-home), then prints:

* the first build: wall time, time in the package step and in the script,
  and the time spent keeping the layer;
* the rebuild from the layer: wall time, time in the script, and what is
  left (goal: at most 1 s on bubblewrap and LXC);
* whether both builds gave the same result file, and the disk space the
  layer takes.

A Debian bookworm amd64 base is made in DIR where missing (bubblewrap and LXC
share one).  Docker needs a reachable daemon (DOCKER_HOST); KVM runs under
TCG where KVM does not work, and then takes many minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.fspath(ROOT))

from gitian.home import Home  # noqa: E402
from gitian.layers import LayerStore, human  # noqa: E402
from gitian.targets import backend_class, make_target  # noqa: E402
from gitian.targets.base import BaseOptions, TargetConfig  # noqa: E402

SUITE, ARCH, DISTRO = "bookworm", "amd64", "debian"

DESCRIPTOR = """\
---
name: "layers-bench"
distro: "debian"
suites:
- "bookworm"
architectures:
- "amd64"
reference_datetime: "2024-01-01 00:00:00"
packages:
- "make"
- "cmake"
- "gcc-mingw-w64-x86-64"
script: |
  export TZ=UTC SOURCE_DATE_EPOCH=1704067200
  printf '#include <stdio.h>\\nint main(void) { puts("hello"); return 0; }\\n' > hello.c
  x86_64-w64-mingw32-gcc -O2 -Wl,--no-insert-timestamp -o "$OUTDIR/hello.exe" hello.c
  mkdir -p tiny
  printf 'cmake_minimum_required(VERSION 3.13)\\nproject(tiny C)\\n' > tiny/CMakeLists.txt
  printf 'add_executable(tiny ../hello.c)\\n' >> tiny/CMakeLists.txt
  cmake -S tiny -B tiny/build -DCMAKE_BUILD_TYPE=Release > /dev/null
  cmake --build tiny/build > /dev/null
  cp tiny/build/tiny "$OUTDIR/tiny"
"""

STEP = re.compile(r"^\s*(?P<title>.+?) \.\.\. (?P<secs>\d+\.\d)s$")
PACKAGE_STEPS = ("Updating apt-get", "Installing additional packages", "Creating package manifest",
                 "Restoring downloaded packages", "Saving downloaded packages")  # fmt: skip


def steps(stderr: str) -> list[tuple[str, float]]:
    """gbuild's progress lines (``title ... 1.2s``) as (title, seconds)."""
    out = []
    for line in stderr.splitlines():
        m = STEP.match(line)
        if m:
            out.append((m.group("title"), float(m.group("secs"))))
    return out


def seconds(found: list[tuple[str, float]], *prefixes: str) -> float:
    return sum(t for title, t in found if title.startswith(prefixes))


def gbuild(home: Home, backend: str, desc: Path) -> tuple[float, list[tuple[str, float]]]:
    env = {k: v for k, v in os.environ.items() if k != "CI" and not k.startswith("USE_")}
    argv = [sys.executable, os.fspath(ROOT / "bin" / "gbuild"), "--backend", backend,
            "--workdir", os.fspath(home.root), os.fspath(desc)]  # fmt: skip
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    took = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit(f"gbuild on {backend} failed:\n{r.stderr[-4000:]}")
    return took, steps(r.stderr)


def bench(home: Home, backend: str, desc: Path) -> None:
    config = TargetConfig(home=home, suite=SUITE, arch=ARCH, distro=DISTRO)
    target = make_target(backend, config)
    if not target.has_base():
        t0 = time.monotonic()
        target.make_base(BaseOptions(distro=DISTRO, suite=SUITE, arch=ARCH, disksize_mb=8192))
        print(f"{backend}: made the base in {time.monotonic() - t0:.0f}s (once)")
    store = LayerStore(home)
    store.clear(lambda name, path: target.drop_layer(path), backend=backend)

    first, found = gbuild(home, backend, desc)
    result = home.result_file("layers-bench").read_bytes()
    script1 = seconds(found, "Running build script")
    packages = seconds(found, *PACKAGE_STEPS)
    keep = seconds(found, "Keeping the installed packages")
    again, found = gbuild(home, backend, desc)
    script2 = seconds(found, "Running build script")
    assert any(t.startswith("Using the installed-packages layer") for t, _ in found)
    same = home.result_file("layers-bench").read_bytes() == result
    [layer] = [la for la in store.layers() if la.backend == backend]
    print(
        f"{backend}: first build {first:.1f}s (package step {packages:.1f}s, script "
        f"{script1:.1f}s, keeping the layer {keep:.1f}s); rebuild from the layer {again:.1f}s "
        f"(script {script2:.1f}s, rest {again - script2:.1f}s); same result file: "
        f"{'yes' if same else 'NO'}; the layer takes {human(layer.size)}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, default=Path("/tmp/gitian-bench-home"))
    ap.add_argument("--backend", action="append", choices=["bwrap", "lxc", "docker", "kvm"])
    args = ap.parse_args()
    backends = args.backend or ["bwrap", "lxc"]
    for b in backends:
        reason = backend_class(b).unavailable_reason(for_base=True)
        if reason:
            print(f"cannot run the {b} backend here: {reason}", file=sys.stderr)
            return 2
    home = Home(args.home.resolve())
    home.root.mkdir(parents=True, exist_ok=True)
    desc = home.root / "layers-bench.yml"
    desc.write_text(DESCRIPTOR)
    for b in backends:
        bench(home, b, desc)
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
