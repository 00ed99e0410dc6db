"""The two build caches (SPEC §1, with ``enable_cache``): ``cache/common`` and
``cache/<name>``.

They go into the target's ``cache/`` before the script runs and come back
after it, each into a directory beside the old one that is then swapped in
with one rename: an interrupted or failed copy leaves the old cache as it was.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from gitian import hashing
from gitian.errors import TargetError
from gitian.home import Home
from gitian.run import signals_held
from gitian.targets.base import Target

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class BuildCaches:
    """``cache/<name>`` and ``cache/common`` of one gitian home."""

    def __init__(self, home: Home, name: str) -> None:
        self.root = home.cache
        self.name = name

    def make(self) -> None:
        for d in ("common", self.name):
            (self.root / d).mkdir(parents=True, exist_ok=True)

    def copy_in(self, target: Target) -> None:
        """Both caches into the target's ``cache/``."""
        for d in (self.name, "common"):
            if (self.root / d).is_dir():
                target.copy_to(self.root / d, "cache")

    def copy_back(self, target: Target) -> None:
        """Both caches back from the target, each swapped in whole."""
        for d in (self.name, "common"):
            self._copy_back(target, d)

    def manifests(self) -> tuple[str, str]:
        """The manifests of ``cache/common`` and ``cache/<name>``."""
        return (
            hashing.manifest_text(hashing.hash_tree(self.root / "common", where="cache/common")),
            hashing.manifest_text(
                hashing.hash_tree(self.root / self.name, where=f"cache/{self.name}")
            ),
        )

    def _copy_back(self, target: Target, name: str) -> None:
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".incoming-{name}-"))
        try:
            target.copy_from(f"cache/{name}", tmp)
            new = tmp / name
            if not new.is_dir():
                raise TargetError(f"the target's cache/{name} did not come back as a directory")
            swap_dirs(new, self.root / name)
        finally:
            with signals_held():
                shutil.rmtree(tmp, ignore_errors=True)


def swap_dirs(new: Path, dest: Path) -> None:
    """Put ``new`` in place of ``dest`` in one step; the old tree goes to ``new``."""
    with signals_held():
        if dest.exists():
            if _renameat2_exchange(new, dest):
                return
            old = dest.with_name(f".old-{dest.name}-{os.getpid()}")
            dest.rename(old)
            try:
                new.rename(dest)
            except BaseException:
                old.rename(dest)
                raise
            old.rename(new)
        else:
            new.rename(dest)


def _renameat2_exchange(a: Path, b: Path) -> bool:
    # The standard library has no renameat2: libc's, through ctypes.
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn: Any = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc != 0:
        err = ctypes.get_errno()
        if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: fall back
            return False
        raise OSError(err, os.strerror(err), os.fspath(b))
    return True
