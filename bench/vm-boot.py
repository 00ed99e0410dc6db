#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""KVM backend figures: base image build time, boot-to-ready, poweroff.

    bench/vm-boot.py [--home DIR] [--runs N] [--skip-build] [--accel kvm|tcg]

Builds a Debian bookworm amd64 VM base in DIR (default /tmp/kvm/bench; reused
with --skip-build), then N times: make-clean-vm, start-target, wait until a
command runs over SSH ("boot-to-ready"), stop-target.  Prints each figure and
the median.  Needs root, mmdebstrap, qemu; uses VM_SSH_PORT or 2223.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from gitian.bootstrap import choose_mirror
from gitian.home import Home
from gitian.targets.kvm import KvmConfig, KvmTarget
from gitian.vmimage import ImageSpec, build_image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", default="/tmp/kvm/bench")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--accel", choices=("kvm", "tcg"), default=None)
    a = ap.parse_args()
    home = Home(Path(a.home).resolve())
    home.root.mkdir(parents=True, exist_ok=True)
    if not a.skip_build:
        t0 = time.monotonic()
        mirror = choose_mirror("debian", explicit=None, mirror_host=os.environ.get("MIRROR_HOST"))
        build_image(home, ImageSpec("debian", "bookworm", "amd64", 8192, mirror=mirror))
        print(f"image build: {time.monotonic() - t0:.1f}s")
    cfg = KvmConfig(
        home=home, suite="bookworm", arch="amd64", distro="debian",
        ssh_port=int(os.environ.get("VM_SSH_PORT", "2223")), kvm_accel=a.accel or None,
    )  # fmt: skip
    boots, stops = [], []
    for i in range(a.runs):
        t = KvmTarget(cfg)
        t.stop()
        t.reset()
        t0 = time.monotonic()
        try:
            t.start()
            t.wait_ready()
            boots.append(time.monotonic() - t0)
            up = t.run(["cat", "/proc/uptime"], user="root", capture=True).stdout.split()[0]
            t1 = time.monotonic()
        finally:
            t.stop()
        stops.append(time.monotonic() - t1)
        print(
            f"run {i + 1} ({t.accel()}): boot-to-ready {boots[-1]:.1f}s "
            f"(guest uptime {up.decode()}s), stop {stops[-1]:.1f}s",
            flush=True,
        )
    print(f"boot-to-ready median: {statistics.median(boots):.1f}s over {len(boots)} runs")
    print(f"stop-target median: {statistics.median(stops):.1f}s")
    print(f"host load average: {os.getloadavg()[0]:.1f} (2 cores shared)")


if __name__ == "__main__":
    main()
