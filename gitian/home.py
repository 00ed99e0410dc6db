"""The gitian home: the working directory every tool works relative to (SPEC §1)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
DATA = PACKAGE_ROOT / "data"


def target_bin() -> Path:
    """Scripts that run inside the target (``target-bin/`` in a checkout)."""
    return DATA / "target-bin"


def etc() -> Path:
    """Templates (``etc/`` in a checkout), e.g. the LXC config."""
    return DATA / "etc"


@dataclass(frozen=True)
class Home:
    """Paths inside one gitian home."""

    root: Path

    @classmethod
    def find(cls, workdir: str | os.PathLike[str] | None = None) -> Home:
        """``--workdir`` if given, else ``GITIAN_BASE``, else the current directory."""
        if workdir is None:
            workdir = os.environ.get("GITIAN_BASE") or os.getcwd()
        return cls(Path(workdir).resolve())

    @property
    def inputs(self) -> Path:
        return self.root / "inputs"

    @property
    def var(self) -> Path:
        return self.root / "var"

    @property
    def build(self) -> Path:
        return self.root / "build"

    @property
    def result(self) -> Path:
        return self.root / "result"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def sigs(self) -> Path:
        return self.root / "sigs"

    @property
    def package_cache(self) -> Path:
        """Host-side cache of downloaded .deb files shared by all builds."""
        return self.var / "cache" / "debs"

    def result_file(self, name: str) -> Path:
        return self.result / f"{name}-res.yml"

    def base(self, suite: str, arch: str, suffix: str = "") -> Path:
        return self.root / f"base-{suite}-{arch}{suffix}"

    def target(self, suite: str, arch: str, suffix: str = "") -> Path:
        return self.root / f"target-{suite}-{arch}{suffix}"
