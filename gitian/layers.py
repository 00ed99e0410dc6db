"""Installed-packages layers: a rebuild starts where the package step ended.

The package step of a configuration (SPEC §3.4: multiarch, repositories,
``apt-get update``, the packages, the repository packages, alternatives, the
upgrade, the package manifest) depends only on the base and on a few values
of the descriptor and the command.  Its result is kept as a *layer*, keyed by
all of them (:func:`layer_key`).  The next build with the same key starts its
clean target from the layer and skips the apt steps.  The build itself always
runs in a fresh target started from the layer, the first build too, so a
rebuild and the build that made the layer see the same machine: the result
file and every output byte are the same.

Each backend keeps the layer's files its own way (``Target.keep_layer``,
``from_layer``, ``drop_layer``): bubblewrap and LXC the overlay upper
directory, stacked as a lower layer on the base; Docker a committed image;
KVM the qcow2 overlay, as the backing file of the next overlays.  This
module keeps the rest, in the gitian home::

    var/layers/<key>/        one layer, renamed into place only when complete
        key.json             the readable key; <key> is the sha256 of its canonical form
        manifest             the package manifest the package step made
        install.log          that step's log
        meta.json            backend, configuration, when it was made, disk space
        used                 its modification time: when a build last used the layer
        ...                  the backend's own files (tree/, disk.qcow2, image)
    var/layers/<key>.lock    flock: exclusive while the layer is made, shared while used
    var/layers/.lock         flock: held briefly to convert a lock, evict or clear

Up to ``limit`` layers per backend are kept; the least recently used go
first, and so does every layer made from a base that was made anew since.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitian import log
from gitian.descriptor import Descriptor
from gitian.errors import GitianError, TargetError, UsageError
from gitian.home import Home, target_bin
from gitian.run import remove_tree, signals_held, write_atomic
from gitian.targets.base import Target
from gitian.text import printable

#: bump when the package step changes in a way the key does not show
FORMAT = 1
#: how many layers per backend a home keeps by default (GITIAN_LAYER_LIMIT)
DEFAULT_LIMIT = 4
#: the target-bin scripts the package step runs (directly or at target start)
STEP_SCRIPTS = ("bootstrap-fixup", "grab-packages.sh", "upgrade-system.sh")
_HEX = frozenset("0123456789abcdef")

Drop = Callable[[str, Path], None]
"""Releases what a layer of a backend holds outside its directory: ``(backend, path)``."""


@dataclass(frozen=True)
class LayerKey:
    """Everything that determines a target's state after the package step."""

    fields: dict[str, Any] = field(hash=False)

    @property
    def canonical(self) -> str:
        """The serialisation the digest is taken of: sorted keys, no spaces, ASCII."""
        return json.dumps(self.fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.canonical.encode("ascii")).hexdigest()

    @property
    def readable(self) -> str:
        return json.dumps(self.fields, sort_keys=True, indent=1, ensure_ascii=True) + "\n"


def layer_key(desc: Descriptor, target: Target, *, upgrade: bool) -> LayerKey | None:
    """The key of ``target``'s layer for ``desc``; None when the backend keeps
    no layers (or has no base: the build then fails where it always did)."""
    base = target.base_identity()
    if base is None:
        return None
    c = target.config
    return LayerKey(
        {
            "format": FORMAT,
            "backend": target.name,
            "base": base,
            "suite": c.suite,
            "arch": c.arch,
            "distro": c.distro,
            "mirror_host": c.mirror_host,
            "multiarch": list(desc.multiarch),
            "repositories": [
                {"source": r.source, "distribution": r.distribution, "packages": list(r.packages)}
                for r in desc.repositories
            ],
            "packages": list(desc.packages),
            "alternatives": [{"package": a.package, "path": a.path} for a in desc.alternatives],
            "upgrade": upgrade,
            "scripts": {
                name: hashlib.sha256((target_bin() / name).read_bytes()).hexdigest()
                for name in STEP_SCRIPTS
            },
        }
    )


@dataclass(frozen=True)
class Layer:
    """One complete layer in ``var/layers/``."""

    path: Path
    key: dict[str, Any] = field(hash=False)
    meta: dict[str, Any] = field(hash=False)

    @property
    def digest(self) -> str:
        return self.path.name

    @property
    def manifest(self) -> bytes:
        return (self.path / "manifest").read_bytes()

    @property
    def install_log(self) -> Path:
        return self.path / "install.log"

    @property
    def backend(self) -> str:
        return str(self.meta.get("backend", "?"))

    @property
    def slot(self) -> tuple[str, str, str]:
        """Backend, suite and architecture: the base a layer was made from."""
        return (self.backend, str(self.key.get("suite")), str(self.key.get("arch")))

    @property
    def size(self) -> int:
        return int(self.meta.get("size", 0))

    @property
    def made(self) -> float:
        return float(self.meta.get("made", 0))

    @property
    def used(self) -> float:
        try:
            return (self.path / "used").stat().st_mtime
        except OSError:
            return self.made

    def describe(self) -> str:
        """``<key12> (made <UTC time>)``, for progress lines."""
        return f"{self.digest[:12]} (made {_utc(self.made)})"


class LayerStore:
    """The layers of one gitian home."""

    def __init__(self, home: Home, *, limit: int = DEFAULT_LIMIT) -> None:
        self.root = home.var / "layers"
        self.limit = limit

    # -- reading ---------------------------------------------------------------
    def load(self, digest: str) -> Layer | None:
        """The complete layer ``digest``, or None."""
        path = self.root / digest
        try:
            key = json.loads((path / "key.json").read_text())
            meta = json.loads((path / "meta.json").read_text())
            if not (path / "manifest").is_file():
                return None
        except (OSError, ValueError):
            return None
        if not isinstance(key, dict) or not isinstance(meta, dict):
            return None
        return Layer(path, key, meta)

    def layers(self) -> list[Layer]:
        """Every complete layer, most recently used first."""
        found = []
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        for name in names:
            if len(name) == 64 and set(name) <= _HEX:
                layer = self.load(name)
                if layer is not None:
                    found.append(layer)
        return sorted(found, key=lambda la: la.used, reverse=True)

    # -- one build's use -----------------------------------------------------------
    @contextlib.contextmanager
    def lease(self, key: LayerKey, target: Target, *, renew: bool = False) -> Iterator[Lease]:
        """Hold ``key``'s layer for one build on ``target``'s backend.

        ``lease.layer`` is the layer when one is ready (and not ``renew``);
        the lease then holds a shared lock on it until the block ends.  Else
        it holds the key's exclusive lock, so no other gbuild makes or uses a
        half-made layer, and the caller runs the package step and calls
        :meth:`Lease.publish`.  A second gbuild with the same key waits.  A
        layer whose backend files are gone (a pruned Docker image) is made anew.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        lock = self.root / f"{key.digest}.lock"
        if not renew:
            fd = _lock_or_wait(lock, fcntl.LOCK_SH, "is making the same layer")
            try:
                layer = self._usable(key, target)
                if layer is not None:
                    _touch(layer.path / "used")
                    yield Lease(self, key, fd, layer)
                    return
            finally:
                os.close(fd)
        fd = _lock_or_wait(lock, fcntl.LOCK_EX, "makes or uses the same layer")
        try:
            layer = None if renew else self._usable(key, target)
            lease = Lease(self, key, fd, layer)
            if layer is not None:  # made by the gbuild we waited for
                lease.share()
                _touch(layer.path / "used")
            yield lease
        finally:
            os.close(fd)

    def _usable(self, key: LayerKey, target: Target) -> Layer | None:
        layer = self.load(key.digest)
        if layer is None:
            return None
        try:
            target.from_layer(layer.path)
        except TargetError as e:
            log.warn(f"layer {key.digest[:12]} cannot be used ({e.message}); making it anew")
            return None
        finally:
            target.from_layer(None)
        return layer

    # -- keeping the count down ------------------------------------------------------
    def evict(self, target: Target, current: LayerKey) -> None:
        """Drop ``target``'s backend's layers beyond the limit, least recently
        used first, and every one made from an older base of the same
        configuration; never ``current`` or a layer in use."""
        slot = (target.name, str(current.fields["suite"]), str(current.fields["arch"]))
        base = current.fields["base"]
        drop = _dropper(target)
        with self._store_locked():
            mine = [la for la in self.layers() if la.backend == target.name]
            stale = [la for la in mine if la.slot == slot and la.key.get("base") != base]
            fresh = [la for la in mine if la not in stale]
            for la in stale + fresh[max(self.limit, 1) :]:
                if la.digest != current.digest:
                    self._remove(la, drop, quiet=True)
            self._sweep_left_overs(drop, backend=target.name)

    def clear(self, drop: Drop, *, backend: str | None = None) -> list[Layer]:
        """Remove every layer (of ``backend``) that no build uses; ``drop``
        releases what a layer holds outside its directory.  Returns those removed."""
        removed = []
        with self._store_locked():
            for la in self.layers():
                if backend in (None, la.backend) and self._remove(la, drop, quiet=False):
                    removed.append(la)
            self._sweep_left_overs(drop, backend=backend)
        return removed

    def _remove(self, layer: Layer, drop: Drop, *, quiet: bool) -> bool:
        lock = self.root / f"{layer.digest}.lock"
        fd = _lock(lock, fcntl.LOCK_EX, wait=False)
        if fd is None:
            msg = f"layer {layer.digest[:12]} is in use by a running gbuild; kept"
            log.debug(msg) if quiet else log.warn(msg)
            return False
        try:
            try:
                drop(layer.backend, layer.path)
            except GitianError as e:
                log.warn(f"layer {layer.digest[:12]} kept: {e.message}")
                return False
            old = self.root / f".old-{layer.digest}-{os.getpid()}"
            os.rename(layer.path, old)  # gone at once; its files go next
            remove_tree(old)
            lock.unlink(missing_ok=True)
            log.info(f"removed layer {layer.digest[:12]} ({layer.backend}, {human(layer.size)})")
            return True
        finally:
            os.close(fd)

    def _sweep_left_overs(
        self, drop: Drop, *, backend: str | None = None, digest: str | None = None
    ) -> None:
        """Remove what killed runs left beside the layers (``.new-*``, ``.old-*``)
        of ``backend`` (None: any): of ``digest``, whose exclusive lock the
        caller holds, else of every key whose lock nobody holds."""
        for name in os.listdir(self.root):
            if not name.startswith((".new-", ".old-")):
                continue
            path, of = self.root / name, name.split("-")[1]
            try:
                owner: str | None = str(json.loads((path / "meta.json").read_text())["backend"])
            except (OSError, ValueError, KeyError, TypeError):
                owner = None  # nothing of a backend was kept yet
            if backend is not None and owner not in (None, backend):
                continue  # its backend releases what it holds
            if digest is not None:
                if of == digest:
                    _remove_left_over(path, owner, drop)
                continue
            fd = _lock(self.root / f"{of}.lock", fcntl.LOCK_EX, wait=False)
            if fd is not None:
                try:
                    _remove_left_over(path, owner, drop)
                finally:
                    os.close(fd)

    @contextlib.contextmanager
    def _store_locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = _lock_or_wait(self.root / ".lock", fcntl.LOCK_EX, "tidies the layers")
        try:
            yield
        finally:
            os.close(fd)


@dataclass
class Lease:
    """A build's hold on one key (see :meth:`LayerStore.lease`)."""

    store: LayerStore
    key: LayerKey
    fd: int
    layer: Layer | None

    def share(self) -> None:
        """Turn the exclusive lock into a shared one, with nothing able to
        remove the layer in between (evicting takes the store's lock too)."""
        with self.store._store_locked():
            fcntl.flock(self.fd, fcntl.LOCK_SH)

    def publish(self, target: Target, manifest: bytes, install_log: Path) -> Layer:
        """Keep ``target`` (which just ran the package step, started from the
        base) as this key's layer; stops it.  Made beside and renamed into
        place, so an interruption leaves no half layer; an older layer with
        the same key (``--upgrade``) is replaced only once this one is complete."""
        root, digest = self.store.root, self.key.digest
        tmp = root / f".new-{digest}-{os.getpid()}"
        # A killed run's, of this key: ours to remove, we hold its exclusive lock.
        self.store._sweep_left_overs(_dropper(target), backend=target.name, digest=digest)
        tmp.mkdir()
        c = target.config
        meta: dict[str, Any] = {
            "backend": target.name, "suite": c.suite, "arch": c.arch, "format": FORMAT,
        }  # fmt: skip
        try:
            write_atomic(tmp / "meta.json", _json(meta))
            outside = target.keep_layer(tmp, digest)
            write_atomic(tmp / "key.json", self.key.readable.encode("ascii"))
            write_atomic(tmp / "manifest", manifest)
            with open(install_log, "rb") as src, open(tmp / "install.log", "wb") as dst:
                dst.write(src.read())
            meta["made"] = time.time()
            meta["size"] = disk_usage(tmp) + outside
            write_atomic(tmp / "meta.json", _json(meta))
            _touch(tmp / "used")
            dest = root / digest
            old = root / f".old-{digest}-{os.getpid()}"
            if dest.exists():  # the one --upgrade replaces, or an unusable one
                target.drop_layer(dest)  # (nothing uses it: we hold its exclusive lock)
            with signals_held():
                if dest.exists():
                    os.rename(dest, old)
                os.rename(tmp, dest)
        except BaseException:
            with signals_held():
                with contextlib.suppress(GitianError, OSError):
                    target.drop_layer(tmp)
                remove_tree(tmp)
            raise
        remove_tree(old)
        layer = self.store.load(digest)
        if layer is None:
            raise TargetError(f"the layer {digest[:12]} just made cannot be read back")
        self.layer = layer
        self.share()
        self.store.evict(target, self.key)
        return layer


# -- helpers ---------------------------------------------------------------------


def _remove_left_over(path: Path, owner: str | None, drop: Drop) -> None:
    if owner is not None:
        try:
            drop(owner, path)
        except GitianError as e:
            log.warn(f"{path.name} kept: {e.message}")
            return
    remove_tree(path)


def _dropper(target: Target) -> Drop:
    """A :data:`Drop` for ``target``'s backend, which ignores other backends."""

    def drop(backend: str, path: Path) -> None:
        if backend == target.name:
            target.drop_layer(path)

    return drop


def limit_from(value: str | None) -> int:
    """The layer limit from ``GITIAN_LAYER_LIMIT`` (unset: the default; 0: no layers)."""
    if value is None or not value.strip():
        return DEFAULT_LIMIT
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise UsageError(f"GITIAN_LAYER_LIMIT must be a number (0 or more), not {value!r}")
    return n


def _lock(path: Path, op: int, *, wait: bool) -> int | None:
    """An fd holding flock ``op`` on ``path`` (made if missing), or None when
    ``wait`` is false and someone else holds it.  A lock file removed while
    we waited (the layer was cleared) is opened again."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, op if wait else op | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _lock_or_wait(path: Path, op: int, what: str) -> int:
    """:func:`_lock`, saying so when it has to wait for another gbuild that ``what``."""
    fd = _lock(path, op, wait=False)
    if fd is None:
        log.info(f"waiting for another gbuild that {what}")
        fd = _lock(path, op, wait=True)
    assert fd is not None
    return fd


def _touch(path: Path) -> None:
    path.touch()
    os.utime(path)


def _json(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, sort_keys=True, indent=1) + "\n").encode()


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def disk_usage(path: Path) -> int:
    """Bytes the files under ``path`` take on disk (each inode counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def human(n: int) -> str:
    """``n`` bytes as ``12.3 MB`` (powers of 1000, as du --si)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def listing(layers: list[Layer]) -> str:
    """The table ``make-base-vm --list-layers`` prints."""
    if not layers:
        return "no installed-packages layers\n"
    rows = [("KEY", "BACKEND", "CONFIGURATION", "SIZE", "MADE", "LAST USED", "PACKAGES")]
    for la in layers:
        pkgs = [str(p) for p in la.key.get("packages", [])]
        for r in la.key.get("repositories", []):
            pkgs += [str(p) for p in r.get("packages", [])]
        upgrade = " (upgraded)" if la.key.get("upgrade") else ""
        rows.append(
            (
                la.digest[:12],
                printable(la.backend),
                printable(f"{la.key.get('suite')}-{la.key.get('arch')}"),
                human(la.size),
                _utc(la.made),
                _utc(la.used),
                printable(" ".join(pkgs) or "-", limit=60) + upgrade,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1]
             for r in rows]  # fmt: skip
    total = sum(la.size for la in layers)
    return "\n".join(lines) + f"\n{len(layers)} layer(s), {human(total)}\n"
