"""The set-up the example benches share: a gitian home with a Debian bookworm
amd64 base (made the first time) and the example's inputs prepared."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.fspath(ROOT))

from gitian.home import Home  # noqa: E402
from gitian.targets import backend_class, make_target  # noqa: E402
from gitian.targets.base import BaseOptions, Target, TargetConfig  # noqa: E402

SUITE, ARCH, DISTRO = "bookworm", "amd64", "debian"


def arguments(description: str) -> argparse.ArgumentParser:
    """--home, --backend (bwrap or lxc) and --runs."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--home", type=Path, default=Path("/tmp/gitian-bench-home"))
    ap.add_argument("--backend", default="bwrap", choices=["bwrap", "lxc"])
    ap.add_argument("--runs", type=int, default=3)
    return ap


def example_home(home_dir: Path, backend: str) -> tuple[Home, Callable[..., Target]]:
    """The home and a maker of ``backend`` targets for it, with the base and
    the example's inputs ready; exits with a message if the backend cannot run."""
    reason = backend_class(backend).unavailable_reason(for_base=True)
    if reason:
        sys.exit(f"cannot run the {backend} backend here: {reason}")
    home = Home(home_dir.resolve())
    home.root.mkdir(parents=True, exist_ok=True)

    def target(suite: str = SUITE, arch: str = ARCH) -> Target:
        return make_target(backend, TargetConfig(home=home, suite=suite, arch=arch, distro=DISTRO))

    if not (home.base(SUITE, ARCH) / "etc").is_dir():
        t0 = time.monotonic()
        target().make_base(BaseOptions(distro=DISTRO, suite=SUITE, arch=ARCH))
        print(f"made the base in {time.monotonic() - t0:.1f}s (once)")
    subprocess.run(
        [os.fspath(ROOT / "descriptors" / "prepare-example"), os.fspath(home.root)],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return home, target
