"""Installed-packages layers (gitian.layers), against a local target that
keeps layers the way the overlay backends do: the package step's files are
kept, and the next clean target starts from them.

Real backends are exercised by the integration tests (tests/integration/
test_gbuild.py, test_docker.py, test_kvm.py); this checks the key, the
bookkeeping and what faults leave behind, in seconds.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gitian import layers
from gitian.build import Builder, BuildOptions
from gitian.descriptor import Descriptor
from gitian.errors import Interrupted, TargetError, UsageError
from gitian.layers import LayerKey, LayerStore, layer_key, limit_from
from gitian.targets import rootfs
from gitian.targets.base import RunResult, Target, TargetConfig
from tests.unit.test_build import LocalTarget, World, _runs

SCRIPT = 'cat "$HOME/installed" > "$OUTDIR/installed"\necho built > "$OUTDIR/built"\n'


class LayeringTarget(LocalTarget):
    """A local target whose package step writes ``installed`` into its files,
    kept as a layer (a copy of the files) and started from again."""

    name = "layering"
    base_id = "base-1"

    def __init__(self, config: TargetConfig, events: list[tuple[Any, ...]], area: Path) -> None:
        super().__init__(config, events, area)
        self.layer: Path | None = None
        self.busy: set[str] = set()

    def base_identity(self) -> dict[str, str] | None:
        return {"kind": "test", "id": self.base_id}

    def from_layer(self, layer: Path | None) -> None:
        if layer is not None and not (layer / "tree").is_dir():
            raise TargetError(f"{layer.name} has no tree")
        self.layer = layer

    def reset(self) -> None:
        super().reset()
        if self.layer is not None:
            shutil.copytree(self.layer / "tree", self.area, dirs_exist_ok=True)

    def keep_layer(self, dest: Path, name: str) -> int:
        self.events.append(("keep_layer", name))
        if self.interrupt_on == "keep_layer":
            shutil.copytree(self.area, dest / "tree")  # half done...
            raise self.interrupt_with
        self.stop()
        shutil.copytree(self.area, dest / "tree")
        return 0

    def drop_layer(self, layer: Path) -> None:
        if layer.name in self.busy:
            raise TargetError("a running target stands on it")
        self.events.append(("drop_layer", layer.name))

    def run(self, argv: Sequence[str], **kw: Any) -> RunResult:  # type: ignore[override]
        res = super().run(argv, **kw)
        if kw.get("user") == "root" and argv[:1] == ["apt-get"] and "install" in argv:
            with open(self.area / "installed", "a") as f:
                f.write(" ".join(argv[argv.index("install") + 1 :]) + "\n")
        return res


class LayerWorld(World):
    target_class = LayeringTarget

    def build(self, desc: Any, **opts: Any) -> tuple[Any, str]:
        self.events.clear()
        return super().build(desc, **opts)

    def layer_dirs(self) -> list[str]:
        root = self.home.var / "layers"
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


@pytest.fixture
def world(tmp_path: Path) -> LayerWorld:
    return LayerWorld(tmp_path)


def _apt(world: World) -> list[str]:
    return [r for r in _runs(world.events) if r.startswith(("apt-get", "dpkg --add"))]


def _outputs(world: World) -> dict[str, bytes]:
    out = world.home.build / "out"
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_a_rebuild_starts_from_the_layer_and_gives_the_same_bytes(world: LayerWorld) -> None:
    desc = world.desc(script=SCRIPT)
    world.build(desc, allow_sudo=True)
    assert _apt(world)  # the first build installs ...
    first = (world.home.result / "demo-res.yml").read_bytes()
    outputs = _outputs(world)
    manifest = (world.home.var / "base-bookworm-amd64.manifest").read_bytes()
    assert outputs["installed"] == b"make gcc\nhello\n"
    [digest] = world.layer_dirs()
    # ... keeps the layer, and builds in a fresh target started from it
    kinds = [e[0] for e in world.events]
    keep = kinds.index("keep_layer")
    assert set(kinds[keep + 1 : kinds.index("reset", keep)]) == {"stop"}
    assert kinds[kinds.index("reset", keep) + 1] == "start"
    assert "setarch x86_64 bash -x" not in _runs(world.events[:keep])

    _, printed = world.build(desc, allow_sudo=True)
    assert _apt(world) == []  # ... the second runs no apt step
    assert (world.home.result / "demo-res.yml").read_bytes() == first
    assert _outputs(world) == outputs
    assert (world.home.var / "base-bookworm-amd64.manifest").read_bytes() == manifest
    log = (world.home.var / "install.log").read_text()
    assert log.startswith(f"# the log of installed-packages layer {digest[:12]} (made ")
    assert "tee -a /etc/sudoers.d/debian" in _runs(world.events)  # the build's own steps ran
    assert world.layer_dirs() == [digest]
    assert all(not t.running for t in world.targets)


def test_the_layer_holds_the_package_step_only(world: LayerWorld) -> None:
    # The build's steps come after the layer is taken: nothing of them is in it.
    world.build(world.desc(script=SCRIPT, cache=True), allow_sudo=True)
    [digest] = world.layer_dirs()
    tree = world.home.var / "layers" / digest / "tree"
    assert sorted(p.name for p in tree.iterdir()) == ["installed"]


def test_a_changed_package_list_makes_a_new_layer(world: LayerWorld) -> None:
    desc = world.desc(script=SCRIPT)
    world.build(desc)
    [old] = world.layer_dirs()
    more = _with(desc, packages=("make", "gcc", "zip"))
    world.build(more)
    assert "apt-get --no-install-recommends -y install make gcc zip" in _apt(world)
    assert (world.home.build / "out" / "installed").read_bytes() == b"make gcc zip\nhello\n"
    assert len(world.layer_dirs()) == 2 and old in world.layer_dirs()
    world.build(desc)  # the first one is still there, and used
    assert _apt(world) == []


def _with(desc: Descriptor, **changes: Any) -> Descriptor:
    return replace(desc, **changes)


def _key(desc: Descriptor, target: Target, *, upgrade: bool = False) -> str:
    key = layer_key(desc, target, upgrade=upgrade)
    assert key is not None
    return key.digest


def test_the_key_holds_what_the_package_step_reads_and_nothing_else(world: LayerWorld) -> None:
    from gitian.descriptor import Alternative, Repository

    desc = world.desc()
    t = world.make("bookworm", "amd64")
    base = _key(desc, t)
    changed = {
        "packages": _key(_with(desc, packages=("gcc", "make")), t),  # order too
        "repositories": _key(
            _with(desc, repositories=(Repository("deb http://x.invalid/ a main", "a", ("p",)),)), t
        ),
        "alternatives": _key(_with(desc, alternatives=(Alternative("cc", "/usr/bin/clang"),)), t),
        "multiarch": _key(_with(desc, multiarch=()), t),
        "upgrade": _key(desc, t, upgrade=True),
        "arch": _key(desc, world.make("bookworm", "i386")),
        "suite": _key(desc, world.make("trixie", "amd64")),
    }
    t2 = world.make("bookworm", "amd64")
    t2.base_id = "base-2"  # type: ignore[attr-defined]
    changed["base"] = _key(desc, t2)
    t3 = world.make("bookworm", "amd64")
    t3.config = replace(t3.config, mirror_host="cacher.invalid")
    changed["mirror"] = _key(desc, t3)
    assert base not in changed.values(), changed
    assert len(set(changed.values())) == len(changed)
    # What only the build reads is no part of it.
    same = _with(
        desc, name="other", script="true\n", files=(), sudo=False, enable_cache=True, remotes=()
    )
    assert _key(same, t) == base


def test_the_key_is_a_hash_of_a_canonical_form_kept_readable(world: LayerWorld) -> None:
    desc = world.desc()
    key = layer_key(desc, world.make("bookworm", "amd64"), upgrade=False)
    assert key is not None
    assert key.digest == hashlib.sha256(key.canonical.encode()).hexdigest()
    assert json.loads(key.readable) == key.fields == json.loads(key.canonical)
    assert key.canonical == json.dumps(key.fields, sort_keys=True, separators=(",", ":"))
    world.build(desc)
    stored = world.home.var / "layers" / key.digest / "key.json"
    assert stored.read_text() == key.readable
    assert key.fields["scripts"]["upgrade-system.sh"]  # the target-bin scripts it runs
    assert LayerKey(dict(key.fields)).digest == key.digest


@pytest.mark.parametrize("where", ["apt-get --no-install-recommends", "bash", "keep_layer"])
@pytest.mark.parametrize("exc", [KeyboardInterrupt(), Interrupted("terminated by SIGTERM")])
def test_an_interrupted_layer_build_leaves_nothing_used_later(
    world: LayerWorld, where: str, exc: BaseException
) -> None:
    desc = world.desc(script=SCRIPT)
    world.tweak.update(interrupt_on=where, interrupt_with=exc)
    with pytest.raises(type(exc)):
        world.build(desc)
    assert world.layer_dirs() == []
    root = world.home.var / "layers"
    assert not [p for p in root.iterdir() if p.name.startswith((".new", ".old"))]
    assert all(not t.running for t in world.targets)
    world.tweak.clear()
    world.build(desc)  # made anew, from the base
    assert "apt-get update" in _apt(world)
    assert (world.home.build / "out" / "installed").read_bytes() == b"make gcc\nhello\n"
    assert len(world.layer_dirs()) == 1


def test_a_failed_package_step_keeps_no_layer(world: LayerWorld) -> None:
    world.tweak["fail_on"] = "apt-get update"
    with pytest.raises(Exception, match="install.log"):
        world.build(world.desc())
    assert world.layer_dirs() == []


def test_what_a_killed_run_left_is_never_used_and_swept(world: LayerWorld) -> None:
    desc = world.desc(script=SCRIPT)
    key = layer_key(desc, world.make("bookworm", "amd64"), upgrade=False)
    assert key is not None
    root = world.home.var / "layers"
    half = root / f".new-{key.digest}-99999"  # SIGKILL while keeping the layer
    (half / "tree").mkdir(parents=True)
    (half / "tree" / "installed").write_text("half\n")
    (half / "meta.json").write_text('{"backend": "layering"}')
    world.build(desc)
    assert "apt-get update" in _apt(world)
    assert (world.home.build / "out" / "installed").read_bytes() == b"make gcc\nhello\n"
    assert not half.exists()  # swept once the key's lock was free
    assert ("drop_layer", half.name) in world.events


def test_no_layer_cache_and_skip_image_run_every_apt_step(world: LayerWorld) -> None:
    desc = world.desc(script=SCRIPT)
    for _ in range(2):
        world.build(desc, layer_cache=False)
        assert "apt-get update" in _apt(world)
    world.build(desc, layer_limit=0)  # GITIAN_LAYER_LIMIT=0
    assert "apt-get update" in _apt(world)
    assert world.layer_dirs() == []
    world.build(desc)
    world.build(desc, skip_image=True)  # the target left from before: no layer
    assert "apt-get update" in _apt(world)
    assert "reset" not in [e[0] for e in world.events]


def test_upgrade_makes_the_layer_anew_and_replaces_it(world: LayerWorld) -> None:
    desc = world.desc(script=SCRIPT)
    world.build(desc)
    plain = world.layer_dirs()
    world.build(desc, upgrade=True)
    upgraded = [d for d in world.layer_dirs() if d not in plain]
    assert len(upgraded) == 1
    made = (world.home.var / "layers" / upgraded[0] / "meta.json").read_bytes()
    world.build(desc, upgrade=True)  # --upgrade: never reused, made anew
    assert "apt-get update" in _apt(world)
    assert sum(r == "bash" for r in _runs(world.events)) == 2  # upgrade-system.sh + grab
    assert sorted(world.layer_dirs()) == sorted(plain + upgraded)  # replaced, not added
    assert (world.home.var / "layers" / upgraded[0] / "meta.json").read_bytes() != made
    assert any(e[0] == "drop_layer" and upgraded[0] in e[1] for e in world.events)  # replaced
    world.build(desc)  # without --upgrade: the plain layer
    assert _apt(world) == []


def test_upgrade_upgrades_once_per_run(world: LayerWorld) -> None:
    # Several builds of one configuration in a run (gbuild --rounds) share
    # one upgraded state: the layer made by the run's first.
    desc = world.desc(script=SCRIPT)
    world.build(desc, upgrade=True)
    world.events.clear()
    builder = Builder(desc, world.home, BuildOptions(upgrade=True), world.make, out=io.StringIO())
    builder.prepare_home()
    _, reference = builder.record_inputs()
    builder.build_configuration("bookworm", "amd64", reference)
    assert "apt-get update" in _apt(world)  # anew: another run
    world.events.clear()
    builder.build_configuration("bookworm", "amd64", reference)
    assert _apt(world) == []  # shared within the run


def test_a_layer_whose_backend_files_are_gone_is_made_anew(world: LayerWorld) -> None:
    desc = world.desc(script=SCRIPT)
    world.build(desc)
    [digest] = world.layer_dirs()
    shutil.rmtree(world.home.var / "layers" / digest / "tree")  # e.g. a pruned image
    world.build(desc)
    assert "apt-get update" in _apt(world)
    assert world.layer_dirs() == [digest]
    assert (world.home.build / "out" / "installed").read_bytes() == b"make gcc\nhello\n"


def test_least_recently_used_layers_go_beyond_the_limit(world: LayerWorld) -> None:
    desc = world.desc(script=SCRIPT)
    variants = [_with(desc, packages=(p,)) for p in ("a", "b", "c")]
    for d in variants:
        world.build(d, layer_limit=2)
    a, b, c = (_key(d, world.make("bookworm", "amd64")) for d in variants)
    assert sorted(world.layer_dirs()) == sorted([b, c])
    assert ("drop_layer", a) in world.events
    time.sleep(0.01)
    world.build(variants[1], layer_limit=2)  # b used: c is now the oldest
    world.build(variants[0], layer_limit=2)
    assert sorted(world.layer_dirs()) == sorted([a, b])


def test_a_layer_in_use_is_never_evicted(world: LayerWorld) -> None:
    desc = world.desc(script=SCRIPT)
    world.build(_with(desc, packages=("a",)), layer_limit=1)
    [a] = world.layer_dirs()
    store = LayerStore(world.home, limit=1)
    key = layer_key(_with(desc, packages=("a",)), world.make("bookworm", "amd64"), upgrade=False)
    assert key is not None
    with store.lease(key, world.make("bookworm", "amd64")) as lease:  # another gbuild uses it
        assert lease.layer is not None
        world.build(_with(desc, packages=("b",)), layer_limit=1)
        assert a in world.layer_dirs()
    world.tweak["busy"] = {a}  # a kept target (--skip-cleanup) stands on it
    world.build(_with(desc, packages=("c",)), layer_limit=1)
    assert a in world.layer_dirs()


def test_a_remade_base_makes_a_new_key_and_its_old_layers_go(world: LayerWorld) -> None:
    desc = world.desc(script=SCRIPT)
    world.build(desc)
    [old] = world.layer_dirs()
    world.tweak["base_id"] = "base-2"  # make-base-vm --force
    world.build(desc)
    assert "apt-get update" in _apt(world)
    [new] = world.layer_dirs()
    assert new != old
    assert ("drop_layer", old) in world.events


def test_a_second_gbuild_waits_for_a_half_made_layer(world: LayerWorld) -> None:
    desc = world.desc(script=SCRIPT)
    key = layer_key(desc, world.make("bookworm", "amd64"), upgrade=False)
    assert key is not None
    store = LayerStore(world.home)
    got: list[Any] = []
    with store.lease(key, world.make("bookworm", "amd64")) as making:  # being made
        assert making.layer is None

        def second() -> None:
            with LayerStore(world.home).lease(key, world.make("bookworm", "amd64")) as lease:
                got.append(lease.layer)

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        assert thread.is_alive() and got == []  # waiting, not building, not using
        t = world.make("bookworm", "amd64")
        t.start()
        (t.area / "installed").write_text("made\n")  # type: ignore[attr-defined]
        install_log = world.home.var / "install.log"
        install_log.parent.mkdir(parents=True, exist_ok=True)
        install_log.write_bytes(b"log\n")
        making.publish(t, b"manifest\n", install_log)
    thread.join(10)
    assert not thread.is_alive()
    assert got and got[0] is not None and got[0].manifest == b"manifest\n"


def test_lock_file_removed_while_waiting_is_opened_again(tmp_path: Path) -> None:
    lock = tmp_path / "k.lock"
    held = layers._lock(lock, fcntl.LOCK_EX, wait=True)
    assert held is not None
    assert layers._lock(lock, fcntl.LOCK_SH, wait=False) is None
    got: list[int | None] = []
    thread = threading.Thread(
        target=lambda: got.append(layers._lock(lock, fcntl.LOCK_SH, wait=True))
    )
    thread.start()
    time.sleep(0.2)
    lock.unlink()  # cleared while the other waited
    os.close(held)
    thread.join(5)
    fd = got[0]
    assert fd is not None and os.fstat(fd).st_ino == lock.stat().st_ino
    os.close(fd)


def test_list_and_clear(world: LayerWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    desc = world.desc(script=SCRIPT)
    world.build(desc)
    world.build(_with(desc, packages=("zip\x1b[31m",)))
    store = LayerStore(world.home)
    table = layers.listing(store.layers())
    assert table.splitlines()[0].split()[:4] == ["KEY", "BACKEND", "CONFIGURATION", "SIZE"]
    assert "layering  bookworm-amd64" in table and "make gcc hello" in table
    assert "\x1b" not in table and "zip\\x1b[31m" in table  # through printable
    total = layers.human(sum(la.size for la in store.layers()))
    assert table.endswith(f"2 layer(s), {total}\n")
    dropped: list[tuple[str, str]] = []
    key = layer_key(desc, world.make("bookworm", "amd64"), upgrade=False)
    assert key is not None
    with store.lease(key, world.make("bookworm", "amd64")):  # in use: kept
        removed = store.clear(lambda backend, path: dropped.append((backend, path.name)))
    assert world.layer_dirs() == [key.digest]
    assert len(removed) == 1 and removed[0].digest != key.digest
    assert dropped == [("layering", removed[0].digest)]
    assert store.clear(lambda b, p: None, backend="other") == []
    assert len(store.clear(lambda b, p: None)) == 1
    assert world.layer_dirs() == []
    assert layers.listing([]) == "no installed-packages layers\n"


def test_layer_limit_from_the_variable() -> None:
    assert limit_from(None) == layers.DEFAULT_LIMIT
    assert limit_from("") == layers.DEFAULT_LIMIT
    assert limit_from("0") == 0 and limit_from("12") == 12
    for bad in ("-1", "many", "1.5"):
        with pytest.raises(UsageError, match="GITIAN_LAYER_LIMIT"):
            limit_from(bad)


# -- the directory base's identity --------------------------------------------------


def _base(root: Path) -> Path:
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text("Package: a\nVersion: 1\n")
    (root / "etc/apt/sources.list.d").mkdir(parents=True)
    (root / "etc/apt/sources.list").write_text("deb http://a.invalid/debian bookworm main\n")
    return root


def test_directory_base_identity_follows_packages_sources_and_time(tmp_path: Path) -> None:
    root = _base(tmp_path / "base")
    first = rootfs.base_identity(root)
    assert first == rootfs.base_identity(root)
    (root / "etc/apt/sources.list.d/extra.list").write_text("deb http://b.invalid/ x main\n")
    second = rootfs.base_identity(root)
    assert second["apt"] != first["apt"] and second["dpkg"] == first["dpkg"]
    status = root / "var/lib/dpkg/status"
    st = status.stat()
    status.write_text("Package: a\nVersion: 2\n")
    os.utime(status, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert rootfs.base_identity(root)["dpkg"] != second["dpkg"]
    os.utime(status, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # made anew, same packages
    assert rootfs.base_identity(root)["made"] != second["made"]


def test_directory_base_identity_never_follows_a_link_to_the_host(tmp_path: Path) -> None:
    root = _base(tmp_path / "base")
    secret = tmp_path / "host-file"
    secret.write_text("one\n")
    (root / "etc/apt/sources.list.d/linked.list").symlink_to(secret)
    before = rootfs.base_identity(root)
    secret.write_text("two\n")
    assert rootfs.base_identity(root) == before  # the link's text counts, not the host's file
    shutil.rmtree(root / "etc/apt")
    (root / "etc/apt").symlink_to(tmp_path)
    assert rootfs.base_identity(root)["apt"] != before["apt"]


def test_overlay_stacks_a_layer_and_forgets_it_on_reset(tmp_path: Path) -> None:
    from gitian.home import Home

    home = Home(tmp_path / "home")
    ov = rootfs.Overlay.for_home(home, "bookworm", "amd64")
    layer = home.var / "layers" / ("a" * 64) / "tree"
    ov.stack([layer])
    assert ov.stacked() == [layer]
    ov.reset()
    assert ov.stacked() == []
    with pytest.raises(UsageError, match="overlay mount cannot take"):
        ov.stack([tmp_path / "a,b"])


def test_backends_without_layers_build_as_before(tmp_path: Path) -> None:
    plain = World(tmp_path)  # LocalTarget keeps no layers
    res = Builder(plain.desc(), plain.home, BuildOptions(), plain.make, out=io.StringIO()).run()
    assert res.report.base_manifests
    assert "apt-get update" in _apt(plain)
    assert not (plain.home.var / "layers").exists()


def test_layer_steps_print_the_key(world: LayerWorld, capfd: pytest.CaptureFixture[str]) -> None:
    desc = world.desc(script=SCRIPT)
    world.build(desc)
    key = layer_key(desc, world.make("bookworm", "amd64"), upgrade=False)
    assert key is not None
    err = capfd.readouterr().err
    assert f"Keeping the installed packages as layer {key.digest[:12]}" in err
    world.build(desc)
    assert f"Using the installed-packages layer {key.digest[:12]} (made " in capfd.readouterr().err
