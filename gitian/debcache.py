"""The host-side ``.deb`` cache (``var/cache/debs``), shared by every build.

Container backends bind it at the target's ``/var/cache/apt/archives``
(``Target.binds_package_cache``): apt downloads straight into it, and the
package manifest can then be hashed here on the host, memoised, instead of by
``target-bin/grab-packages.sh`` on the target (:meth:`DebCache.manifest`).
For the other backends the build copies the cached ``.deb`` files into the
target before the package steps (:meth:`DebCache.push`) and the new ones back
afterwards (:meth:`DebCache.pull`), so nothing is downloaded twice.

Names coming back from a target are untrusted: only regular files named like
a ``.deb`` that the target did not hold before are kept.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gitian import hashing
from gitian.home import Home
from gitian.run import write_atomic
from gitian.targets.base import Target

ARCHIVES = "/var/cache/apt/archives"
DEB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+~_%:\-]*\.deb")
#: installed packages and their .deb file names, as target-bin/grab-packages.sh asks dpkg
DPKG_FORMAT = (
    "${db:Status-Abbrev} ${binary:Package}=${Version} ${Package}_${Version}_${Architecture}.deb\n"
)


@dataclass(frozen=True)
class Pushed:
    """The .deb names a target held once :meth:`DebCache.push` was done."""

    names: frozenset[str]


class DebCache:
    """``home.package_cache`` and what the build does with it."""

    def __init__(self, home: Home) -> None:
        self.dir = home.package_cache
        self.memo = HashMemo(home.var / "cache" / "debs.sha256")

    # -- targets that bind the cache -------------------------------------------
    def manifest(self, target: Target) -> bytes | None:
        """The package manifest grab-packages.sh would print, hashed here.

        Only when the target binds the cache and it already holds the .deb of
        every installed package: then it costs a dpkg-query and (memoised)
        hashing.  None otherwise; grab-packages.sh then does it all.
        """
        if not target.binds_package_cache:
            return None
        res = target.run(["dpkg-query", "-W", "-f", DPKG_FORMAT], capture=True, check=False)
        if res.returncode != 0:
            return None
        names = set()
        for line in res.stdout.decode("utf-8", "replace").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "ii":
                names.add(parts[2].replace(":", "%3a", 1))  # as apt names the file
        if not names or not all(DEB_NAME.fullmatch(n) and self._holds(n) for n in names):
            return None
        lines = [f"{self.memo.sha256(self.dir / n)}  {n}\n" for n in sorted(names, key=os.fsencode)]
        self.memo.save()
        return "".join(lines).encode()

    def _holds(self, name: str) -> bool:
        p = self.dir / name
        return p.is_file() and not p.is_symlink()

    # -- targets with an apt cache of their own ----------------------------------
    def push(self, target: Target, archs: set[str]) -> Pushed:
        """Give the target the cached .debs of ``archs`` it does not hold yet
        (a VM image already carries its base's); say what it holds now."""
        held = target_debs(target)
        names = []
        if self.dir.is_dir():
            names = sorted(
                e.name
                for e in os.scandir(self.dir)
                if e.is_file(follow_symlinks=False)
                and DEB_NAME.fullmatch(e.name)
                and e.name[:-4].rsplit("_", 1)[-1] in archs
                and e.name not in held
            )
        if names:
            unpack = ["tar", "-C", ARCHIVES, "--no-same-owner", "-xf", "-"]
            target.send_tar(self.dir, names, unpack, user="root", what="restoring packages")
        return Pushed(frozenset(held | set(names)))

    def pull(self, target: Target, pushed: Pushed) -> None:
        """Keep the .debs the target downloaded since :meth:`push` in the cache."""
        self.dir.mkdir(parents=True, exist_ok=True)
        have = {p.name for p in self.dir.iterdir()}
        new = sorted(n for n in target_debs(target) - pushed.names if n not in have)
        if not new:
            return
        tmp = Path(tempfile.mkdtemp(dir=self.dir, prefix=".incoming-"))
        try:
            wanted = set(new)
            target.receive_tar(
                ["tar", "-C", ARCHIVES, "-cf", "-", "--", *new],
                tmp,
                user="root",
                keep=lambda m: m.isreg() and m.name in wanted,
                what="saving downloaded packages",
            )
            for n in new:
                p = tmp / n
                if p.is_file() and not p.is_symlink():
                    p.replace(self.dir / n)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def target_debs(target: Target) -> set[str]:
    """The .deb file names in the target's /var/cache/apt/archives."""
    listing = target.run(
        ["find", ARCHIVES, "-maxdepth", "1", "-type", "f", "-name", "*.deb", "-printf", "%f\\n"],
        user="root",
        capture=True,
    ).stdout.decode("utf-8", "replace")
    return {n for n in listing.splitlines() if DEB_NAME.fullmatch(n)}


class HashMemo:
    """sha256 of .deb files in the shared cache, remembered by name, size,
    mtime and inode (apt never rewrites a .deb in place)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.known: dict[str, tuple[str, str]] = {}
        self.dirty = False
        try:
            for line in path.read_text(encoding="utf-8").splitlines():
                name, key, sha = line.split("\t")
                self.known[name] = (key, sha)
        except (OSError, ValueError):
            self.known = {}

    def sha256(self, p: Path) -> str:
        st = p.stat()
        key = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
        hit = self.known.get(p.name)
        if hit is not None and hit[0] == key:
            return hit[1]
        sha = hashing.sha256_file(p)
        self.known[p.name] = (key, sha)
        self.dirty = True
        return sha

    def save(self) -> None:
        if self.dirty:
            text = "".join(f"{n}\t{k}\t{s}\n" for n, (k, s) in sorted(self.known.items()))
            write_atomic(self.path, text.encode())
            self.dirty = False
