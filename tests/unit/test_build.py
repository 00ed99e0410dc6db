"""The gbuild flow, run against a local target.

``LocalTarget`` implements the Target interface on the host: the build user's
commands (init-build.sh, the build script) really run, with bash under
setarch, in a temporary "home"; root's package commands are recorded and
answered.  This checks the order of the steps, the files gbuild writes, and
what it leaves behind on failure and interruption, in seconds.  Real targets
are exercised by tests/integration/test_gbuild.py.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import pytest

from gitian.build import Builder, BuildOptions, configurations, overhead
from gitian.debcache import DPKG_FORMAT
from gitian.descriptor import parse
from gitian.errors import BuildError, Interrupted
from gitian.home import Home
from gitian.manifest import read_report
from gitian.targets.base import BaseOptions, RunResult, Target, TargetConfig

ROOT = Path(__file__).resolve().parents[2]


class LocalTarget(Target):
    name = "local"
    binds_package_cache = True
    events: list[tuple[Any, ...]]

    def __init__(self, config: TargetConfig, events: list[tuple[Any, ...]], area: Path) -> None:
        super().__init__(config)
        self.events = events
        self.area = area / f"{config.suite}-{config.arch}"
        self.running = False
        self.marker = True  # /var/cache/gitian/initial-upgrade exists
        self.fail_on: str | None = None
        self.interrupt_on: str | None = None
        self.dpkg_output = b""
        self.interrupt_with: BaseException = KeyboardInterrupt()

    @classmethod
    def unavailable_reason(cls, *, for_base: bool = False, config: object = None) -> str | None:
        return None

    def make_base(self, options: BaseOptions) -> None:
        raise NotImplementedError

    def has_base(self) -> bool:
        return True

    def reset(self) -> None:
        self.events.append(("reset", self.config.suite, self.config.arch))
        shutil.rmtree(self.area, ignore_errors=True)
        self.area.mkdir(parents=True)

    def start(self) -> None:
        self.events.append(("start", self.config.suite, self.config.arch))
        self.area.mkdir(parents=True, exist_ok=True)
        self.running = True

    def stop(self) -> None:
        self.events.append(("stop", self.config.suite, self.config.arch))
        self.running = False

    def run(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bytes | IO[bytes] | None = None,
        stdout: IO[bytes] | int | None = None,
        stderr: IO[bytes] | int | None = None,
        capture: bool = False,
        check: bool = True,
        network: bool = False,
    ) -> RunResult:
        assert self.running, f"run() on a stopped target: {argv}"
        u = user or self.config.user
        self.events.append(("run", u, tuple(argv), network))
        joined = " ".join(argv)
        if self.interrupt_on and self.interrupt_on in joined:
            raise self.interrupt_with
        if self.fail_on and self.fail_on in joined:
            if hasattr(stdout, "write"):
                stdout.write(b"E: something broke on the target\n")  # type: ignore[union-attr]
            return RunResult(100)
        if argv[:1] == ["dpkg-query"]:
            return RunResult(0, self.dpkg_output)
        if u == "root":
            if argv[:1] == ["test"]:
                return RunResult(1 if self.marker else 0)
            if argv == ["bash"] and isinstance(stdin, bytes) and b"sha256sum" in stdin:
                return RunResult(0, f"{'a' * 64}  base-{self.config.arch}.deb\n".encode())
            return RunResult(0)
        # the build user's commands really run, in the target's home
        data = stdin if isinstance(stdin, bytes) else None
        proc = subprocess.run(
            list(argv),
            cwd=self.area,
            env={"HOME": os.fspath(self.area), "PATH": os.environ["PATH"], "LANG": "C.UTF-8"},
            input=data,
            stdin=None if data is not None else (stdin or subprocess.DEVNULL),
            stdout=subprocess.PIPE if capture else stdout,
            stderr=subprocess.PIPE if capture else stderr,
        )
        if check and proc.returncode:
            raise AssertionError(f"{argv} failed")
        return RunResult(proc.returncode, proc.stdout or b"", proc.stderr or b"")

    def copy_to(self, src: Path, dest: str, *, user: str | None = None) -> None:
        self.events.append(("copy_to", Path(src).name, dest))
        d = self.area / dest
        d.mkdir(parents=True, exist_ok=True)
        if Path(src).is_dir():
            shutil.copytree(src, d / Path(src).name, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(src, d / Path(src).name)

    def copy_from(self, src: str, dest: Path, *, user: str | None = None) -> None:
        self.events.append(("copy_from", src))
        s = self.area / src
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copytree(s, dest / s.name, symlinks=True, dirs_exist_ok=True)


def _git(repo: Path, *args: str) -> str:
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="a", GIT_AUTHOR_EMAIL="a@x.invalid", GIT_COMMITTER_NAME="a",
        GIT_COMMITTER_EMAIL="a@x.invalid", GIT_AUTHOR_DATE="2020-01-02T03:04:05Z",
        GIT_COMMITTER_DATE="2020-01-02T03:04:05Z", GIT_CONFIG_GLOBAL="/dev/null",
    )  # fmt: skip
    return subprocess.run(
        ["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgSign=false", *args],
        cwd=repo, env=env, check=True, capture_output=True,
    ).stdout.decode().strip()  # fmt: skip


DESC = """\
name: demo
distro: debian
suites: [{suites}]
architectures: [{archs}]
packages: [make, gcc]
remotes:
- url: {url}
  dir: src
  commit: {commit}
files: [input.txt]
enable_cache: {cache}
sudo: true
multiarch: [i386]
repositories:
- source: deb http://example.invalid/debian bookworm-backports main
  distribution: bookworm-backports
  packages: [hello]
alternatives:
- package: cc
  path: /usr/bin/gcc
script: |
  echo "bits=$GBUILD_BITS procs=$NUM_PROCS mem=$NUM_MEM ref=$REFERENCE_DATETIME" > $OUTDIR/info
  cat src/file input.txt > $OUTDIR/combined
  touch $OUTDIR/.dotfile
  if [ -n "$GBUILD_CACHE_ENABLED" ]; then
    echo package > $GBUILD_PACKAGE_CACHE/p
    echo common > $GBUILD_COMMON_CACHE/c
  fi
"""


class World:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.home = Home(tmp / "home")
        self.home.inputs.mkdir(parents=True)
        (self.home.inputs / "input.txt").write_text("input\n")
        up = self.home.inputs / "upstream"  # a descriptor may only name paths in inputs/
        up.mkdir()
        _git(up, "init", "-q")
        (up / "file").write_text("from git\n")
        _git(up, "add", "file")
        _git(up, "commit", "-qm", "c")
        self.upstream = up
        self.commit = _git(up, "rev-parse", "HEAD")
        self.events: list[tuple[Any, ...]] = []
        self.targets: list[LocalTarget] = []
        self.tweak: dict[str, Any] = {}

    def desc(self, *, suites: str = "bookworm", archs: str = "amd64", cache: bool = False,
             script: str | None = None) -> Any:  # fmt: skip
        text = DESC.format(
            suites=suites, archs=archs, url="../upstream", commit=self.commit,
            cache="true" if cache else "false",
        )  # fmt: skip
        if script is not None:
            body = "".join(f"  {line}\n" for line in script.splitlines())
            text = text.split("script: |")[0] + "script: |\n" + body
        path = self.tmp / "demo.yml"
        path.write_text(text)
        return parse(text.encode(), path)

    target_class: type[LocalTarget] = LocalTarget

    def make(self, suite: str, arch: str) -> Target:
        t = self.target_class(
            TargetConfig(home=self.home, suite=suite, arch=arch, distro="debian"),
            self.events,
            self.tmp / "targets",
        )
        for k, v in self.tweak.items():
            setattr(t, k, v)
        self.targets.append(t)
        return t

    def build(self, desc: Any, **opts: Any) -> tuple[Any, str]:
        out = io.StringIO()
        res = Builder(desc, self.home, BuildOptions(**opts), self.make, out=out).run()
        return res, out.getvalue()


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def _runs(events: list[tuple[Any, ...]]) -> list[str]:
    return [" ".join(e[2]) for e in events if e[0] == "run"]


def test_whole_flow_writes_result_and_prints_out_lines(world: World) -> None:
    desc = world.desc()
    res, printed = world.build(desc, allow_sudo=True)
    h = world.home
    assert res.result_file == h.result / "demo-res.yml"
    report = read_report(res.result_file)
    # out: sorted by path, dotfiles included, sha256sum lines
    combined = hashlib.sha256(b"from git\ninput\n").hexdigest()
    lines = report.out_manifest.splitlines()
    assert [ln.split("  ")[1] for ln in lines] == [".dotfile", "combined", "info"]
    assert f"{combined}  combined" in lines
    info = (h.build / "out" / "info").read_text()
    assert info == "bits=64 procs=2 mem=2000 ref=2020-01-02 03:04:05\n"
    # in: descriptor line, file line, git entry without a newline
    desc_sha = hashlib.sha256(desc.raw).hexdigest()
    in_sha = hashlib.sha256(b"input\n").hexdigest()
    assert report.in_manifest == (
        f"{desc_sha}  demo-desc.yml\n{in_sha}  input.txt\ngit:{world.commit} src"
    )
    assert report.base_manifests == (("bookworm-amd64", f"{'a' * 64}  base-amd64.deb\n"),)
    assert (h.var / "base-bookworm-amd64.manifest").exists()
    # stdout: the out lines, then the result's own sha256 line
    digest = hashlib.sha256(res.result_file.read_bytes()).hexdigest()
    assert printed == report.out_manifest + f"{digest}  demo-res.yml\n"
    # the generated script and the logs are where classic users look
    script = (h.var / "build-script").read_text()
    assert "(cd build/src && git reset -q --hard && git clean -q -f -d)\n" in script
    assert "+ cd build" in (h.var / "build.log").read_text()  # bash -x trace
    assert (h.var / "install.log").exists()


def test_step_order_is_the_classic_flow_with_the_package_step_first(world: World) -> None:
    """The classic steps in their order, except that the package step comes
    before the sudoers line, init-build.sh and the inputs: what it leaves can
    then be kept as an installed-packages layer holding nothing of the build
    (gitian.layers), and neither part reads what the other writes."""
    world.build(world.desc(), allow_sudo=True)
    runs = _runs(world.events)
    order = [
        "dpkg --add-architecture i386",
        "tee -a /etc/apt/sources.list",
        "apt-get update",
        "apt-get --no-install-recommends -y install make gcc",
        "apt-get -t bookworm-backports --no-install-recommends -y install hello",
        "update-alternatives --set cc /usr/bin/gcc",
        "test ! -e /var/cache/gitian/initial-upgrade",
        "dpkg-query -W -f " + DPKG_FORMAT,  # the manifest, if the bound cache has every .deb
        "bash",  # else target-bin/grab-packages.sh
        "tee -a /etc/sudoers.d/debian",
        "setarch x86_64 bash",
        "install -m 0755 /dev/stdin /usr/local/bin/canon-zip",
        "setarch x86_64 bash -x",
    ]
    assert runs == order
    kinds = [e[0] for e in world.events]
    assert kinds[:3] == ["stop", "reset", "start"]
    assert kinds[-2:] == ["copy_from", "stop"]  # results out, then "Cleaning up target"
    # apt steps get the network; the sudoers line is root's
    for e in world.events:
        if e[0] == "run" and e[2][0] == "apt-get":
            assert e[3] is True and e[1] == "root"
    sudo = next(e for e in world.events if e[0] == "run" and e[2][0] == "tee")
    assert sudo[1] == "root"


def test_sudo_needs_allow_sudo(world: World) -> None:
    world.build(world.desc())
    assert not any("sudoers" in r for r in _runs(world.events))


def test_upgrade_when_marker_missing_or_asked(world: World) -> None:
    world.build(world.desc(), upgrade=True)
    assert sum(r == "bash" for r in _runs(world.events)) == 2  # upgrade + grab-packages
    world.events.clear()
    world.tweak["marker"] = False
    world.build(world.desc())
    assert sum(r == "bash" for r in _runs(world.events)) == 2


def test_several_suites_and_architectures_in_order(world: World) -> None:
    desc = world.desc(suites="bookworm, trixie", archs="amd64, i386")
    assert configurations(desc) == [
        ("bookworm", "amd64"), ("bookworm", "i386"), ("trixie", "amd64"), ("trixie", "i386"),
    ]  # fmt: skip
    res, _ = world.build(desc)
    assert [k for k, _ in res.report.base_manifests] == [
        "bookworm-amd64", "bookworm-i386", "trixie-amd64", "trixie-i386",
    ]  # fmt: skip
    starts = [(e[1], e[2]) for e in world.events if e[0] == "start"]
    assert starts == configurations(desc)
    # the i386 builds ran under setarch i386 with 32 bits
    assert any(r == "setarch i386 bash -x" for r in _runs(world.events))
    # each configuration's target is stopped before the next one starts
    live = 0
    for e in world.events:
        if e[0] == "start":
            live += 1
            assert live == 1
        elif e[0] == "stop" and live:
            live -= 1
    assert all(not t.running for t in world.targets)


def test_skip_image_and_skip_cleanup(world: World) -> None:
    world.build(world.desc(), skip_image=True, skip_cleanup=True)
    kinds = [e[0] for e in world.events]
    assert "reset" not in kinds
    assert kinds[-1] == "copy_from"  # not stopped at the end
    assert world.targets[-1].running


def test_caches_round_trip_and_read_only(world: World) -> None:
    h = world.home
    res, _ = world.build(world.desc(cache=True))
    assert (h.cache / "demo" / "p").read_text() == "package\n"
    assert (h.cache / "common" / "c").read_text() == "common\n"
    pkg = hashlib.sha256(b"package\n").hexdigest()
    assert res.report.cache_package_manifest == f"{pkg}  p\n"
    assert "GBUILD_CACHE_ENABLED=1" in (h.var / "build-script").read_text()
    # second build: caches are copied in first
    world.events.clear()
    (h.cache / "common" / "old").write_text("kept\n")
    world.build(world.desc(cache=True))
    assert ("copy_to", "demo", "cache") in world.events
    assert ("copy_to", "common", "cache") in world.events
    assert (h.cache / "common" / "old").read_text() == "kept\n"
    assert not list(h.cache.glob(".incoming-*"))
    # -o: nothing copied back
    world.events.clear()
    (h.cache / "common" / "c").write_text("host copy\n")
    world.build(world.desc(cache=True, script="echo changed > $GBUILD_COMMON_CACHE/c\n"),
                cache_read_only=True)  # fmt: skip
    assert (h.cache / "common" / "c").read_text() == "host copy\n"
    assert not any(e[0] == "copy_from" and "cache" in e[1] for e in world.events)


def test_failing_script_names_the_log_and_leaves_no_result(world: World) -> None:
    h = world.home
    world.build(world.desc())
    before = (h.result / "demo-res.yml").read_bytes()
    desc = world.desc(script="echo compiling\necho 'fatal: it broke' >&2\nexit 3\n")
    with pytest.raises(BuildError) as e:
        world.build(desc)
    msg = e.value.message
    assert "exit status 3" in msg
    assert "var/build.log" in msg and "fatal: it broke" in msg
    assert os.fspath(h.var / "build.log") in msg
    assert (h.result / "demo-res.yml").read_bytes() == before  # untouched
    assert all(not t.running for t in world.targets)


def test_failure_names_the_step_and_the_line_of_the_script(world: World) -> None:
    script = "echo compiling\nfor f in input.txt; do\n  test -s $f\ndone\ntest -e no/such/file\n"
    with pytest.raises(BuildError) as e:
        world.build(world.desc(script=script))
    msg = e.value.message
    assert msg.startswith("Running build script (log in var/build.log): the build script failed")
    first = (world.tmp / "demo.yml").read_text().splitlines().index("script: |") + 2
    where = f"at line 5 of the descriptor's script (demo.yml:{first + 4}): test -e no/such/file"
    assert where in msg, msg
    assert "+ test -e no/such/file" in msg  # and the log's last lines
    # A failing package step names its step and install.log.
    world.tweak["fail_on"] = "apt-get update"
    with pytest.raises(BuildError) as e:
        world.build(world.desc())
    assert e.value.message.startswith(
        "Updating apt-get repository (log in var/install.log): apt-get update failed"
    )
    assert "last lines of var/install.log" in e.value.message


def test_failing_install_names_install_log(world: World) -> None:
    world.tweak["fail_on"] = "apt-get --no-install-recommends"
    with pytest.raises(BuildError) as e:
        world.build(world.desc())
    assert "var/install.log" in e.value.message
    assert "E: something broke on the target" in e.value.message
    assert not (world.home.result / "demo-res.yml").exists()
    assert all(not t.running for t in world.targets)


@pytest.mark.parametrize(
    "phase",
    ["apt-get update", "setarch x86_64 bash -x", "init-build", "dpkg", "test !", "tar -C"],
)
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_interrupt_stops_the_target_and_writes_nothing(
    world: World, phase: str, signal_name: str
) -> None:
    h = world.home
    world.build(world.desc(cache=True))  # a previous result and caches to keep
    before = {p: p.read_bytes() for p in sorted(h.cache.rglob("*")) if p.is_file()}
    result = (h.result / "demo-res.yml").read_bytes()
    world.events.clear()
    world.tweak["interrupt_on"] = "setarch x86_64 bash" if phase == "init-build" else phase
    # SIGTERM reaches the pipeline as Interrupted (gitian.cli's handler), SIGINT as Ctrl-C
    exc: BaseException = (
        KeyboardInterrupt() if signal_name == "SIGINT" else Interrupted("terminated by SIGTERM")
    )
    world.tweak["interrupt_with"] = exc
    desc = world.desc(cache=True, script="echo changed > $GBUILD_COMMON_CACHE/c\n")
    with pytest.raises(type(exc)):
        if phase == "tar -C":  # while the caches are being copied back
            world.tweak["interrupt_on"] = None
            _interrupt_cache_copy(world, desc, exc)
        else:
            world.build(desc)
    assert (h.result / "demo-res.yml").read_bytes() == result
    assert {p: p.read_bytes() for p in sorted(h.cache.rglob("*")) if p.is_file()} == before
    assert all(not t.running for t in world.targets)
    assert world.events[-1][0] == "stop"
    assert not list(h.cache.glob(".incoming-*"))


def _interrupt_cache_copy(world: World, desc: Any, exc: BaseException) -> None:
    class Interrupting(LocalTarget):
        def copy_from(self, src: str, dest: Path, *, user: str | None = None) -> None:
            if src.startswith("cache/"):
                super().copy_from(src, dest, user=user)  # half done...
                raise exc
            super().copy_from(src, dest, user=user)

    def make(suite: str, arch: str) -> Target:
        t = Interrupting(
            TargetConfig(home=world.home, suite=suite, arch=arch, distro="debian"),
            world.events, world.tmp / "targets",
        )  # fmt: skip
        world.targets.append(t)
        return t

    Builder(desc, world.home, BuildOptions(), make, out=io.StringIO()).run()


def test_ci_tees_the_build_log(world: World, capfd: pytest.CaptureFixture[str]) -> None:
    world.build(world.desc(script="echo visible-in-ci\n"), ci=True)
    out = capfd.readouterr().out
    assert "visible-in-ci" in out
    assert "visible-in-ci" in (world.home.var / "build.log").read_text()


def test_quiet_prints_nothing(world: World) -> None:
    _, printed = world.build(world.desc(), quiet=True)
    assert printed == ""


def test_build_dir_is_wiped_and_result_dir_made(world: World) -> None:
    h = world.home
    (h.build / "out").mkdir(parents=True)
    (h.build / "out" / "stale").write_text("old")
    res, _ = world.build(world.desc())
    assert "stale" not in res.report.out_manifest


def test_missing_input_fails_before_any_target(world: World) -> None:
    (world.home.inputs / "input.txt").unlink()
    with pytest.raises(Exception, match="input.txt"):
        world.build(world.desc())
    assert world.events == []


def test_hazardous_output_fails_without_result(world: World) -> None:
    with pytest.raises(BuildError, match="outside"):
        world.build(world.desc(script="ln -s /etc/passwd $OUTDIR/leak\n"))
    assert not (world.home.result / "demo-res.yml").exists()


def test_reference_datetime_from_descriptor_wins(world: World) -> None:
    desc = world.desc()
    text = desc.raw.decode().replace(
        "name: demo\n", "name: demo\nreference_datetime: '2019-09-09 09:09:09'\n"
    )
    desc = parse(text.encode(), world.tmp / "demo.yml")
    world.build(desc)
    assert (
        "REFERENCE_DATETIME='2019-09-09 09:09:09'" in (world.home.var / "build-script").read_text()
    )


def test_overhead_excludes_install_and_script(world: World) -> None:
    res, _ = world.build(world.desc())
    total = sum(t for _, t, _ in res.timings)
    ext = [title for title, _, external in res.timings if external]
    assert "Running build script (log in var/build.log)" in ext
    assert "Updating apt-get repository (log in var/install.log)" in ext
    assert overhead(res.timings, total) <= total


def test_example_descriptor_parses_and_pins_the_prepared_commit(tmp_path: Path) -> None:
    out = subprocess.run(
        [os.fspath(ROOT / "descriptors" / "prepare-example"), os.fspath(tmp_path)],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    from gitian.descriptor import load

    desc = load(ROOT / "descriptors" / "example.yml")
    assert desc.remotes[0].commit == out
    assert (tmp_path / "inputs" / "greeting.txt").is_file()
    assert (tmp_path / "inputs" / "hello.bundle").is_file()


def test_target_dying_mid_build_is_a_clear_error(world: World) -> None:
    # The build script's process killed from outside: bash dies of SIGKILL.
    with pytest.raises(BuildError) as e:
        world.build(world.desc(script="echo going\nkill -KILL $$\n"))
    assert "exit status" in e.value.message and "var/build.log" in e.value.message
    assert not (world.home.result / "demo-res.yml").exists()
    assert all(not t.running for t in world.targets)


class DiskFull(LocalTarget):
    def copy_from(self, src: str, dest: Path, *, user: str | None = None) -> None:
        if src.startswith("cache/"):
            # half a tree arrives, then the disk is full
            (dest / Path(src).name).mkdir(parents=True, exist_ok=True)
            (dest / Path(src).name / "partial").write_bytes(b"half")
            raise OSError(28, "No space left on device")
        super().copy_from(src, dest, user=user)


def test_disk_full_while_copying_caches_back_keeps_old_caches(world: World) -> None:
    h = world.home
    world.build(world.desc(cache=True))
    before = {p.relative_to(h.cache): p.read_bytes() for p in h.cache.rglob("*") if p.is_file()}
    result = (h.result / "demo-res.yml").read_bytes()

    def make(suite: str, arch: str) -> Target:
        t = DiskFull(
            TargetConfig(home=h, suite=suite, arch=arch, distro="debian"),
            world.events, world.tmp / "targets",
        )  # fmt: skip
        world.targets.append(t)
        return t

    with pytest.raises(BuildError, match="Grabbing cache from target: No space left"):
        Builder(world.desc(cache=True), h, BuildOptions(), make, out=io.StringIO()).run()
    after = {p.relative_to(h.cache): p.read_bytes() for p in h.cache.rglob("*") if p.is_file()}
    assert after == before
    assert (h.result / "demo-res.yml").read_bytes() == result
    assert all(not t.running for t in world.targets)


def test_cache_swap_replaces_whole_tree(tmp_path: Path) -> None:
    from gitian.buildcache import swap_dirs as _swap_dirs

    old = tmp_path / "cache"
    (old / "sub").mkdir(parents=True)
    (old / "sub" / "stale").write_text("old")
    new = tmp_path / "incoming" / "cache"
    new.mkdir(parents=True)
    (new / "fresh").write_text("new")
    _swap_dirs(new, old)
    assert sorted(p.name for p in old.rglob("*")) == ["fresh"]
    assert (new / "sub" / "stale").read_text() == "old"  # the old tree, to be removed
    gone = tmp_path / "gone"
    _swap_dirs(new, gone)
    assert (gone / "sub" / "stale").exists()


def test_package_manifest_hashed_on_host_when_the_cache_is_bound(world: World) -> None:
    cache = world.home.package_cache
    cache.mkdir(parents=True)
    (cache / "b_1.0_amd64.deb").write_bytes(b"b")
    (cache / "a_1%3a2.0_all.deb").write_bytes(b"a")
    (cache / "unrelated_9_amd64.deb").write_bytes(b"x")
    world.tweak["dpkg_output"] = (
        b"ii  b:amd64=1.0 b_1.0_amd64.deb\n"
        b"ii  a=1:2.0 a_1:2.0_all.deb\n"
        b"rc  gone=1 gone_1_amd64.deb\n"
    )
    res, _ = world.build(world.desc())
    expected = subprocess.run(
        ["sha256sum", "--", "a_1%3a2.0_all.deb", "b_1.0_amd64.deb"],
        cwd=cache, capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    assert res.report.base_manifests == (("bookworm-amd64", expected),)
    assert not any(r == "bash" for r in _runs(world.events))  # no grab-packages.sh
    # memoised: a second build hashes nothing new, same text
    res2, _ = world.build(world.desc())
    assert res2.report.base_manifests == res.report.base_manifests
    # a package missing from the cache: grab-packages.sh downloads and hashes
    (cache / "b_1.0_amd64.deb").unlink()
    world.events.clear()
    res3, _ = world.build(world.desc())
    assert any(r == "bash" for r in _runs(world.events))
    assert res3.report.base_manifests[0][1] == f"{'a' * 64}  base-amd64.deb\n"


class CopyingDebs(LocalTarget):
    """A target whose apt cache is its own: gbuild copies .debs in and out."""

    binds_package_cache = False

    def run(self, argv: Sequence[str], **kw: Any) -> RunResult:  # type: ignore[override]
        archives = self.area / "archives"
        archives.mkdir(parents=True, exist_ok=True)
        if kw.get("user") == "root" and argv[0] in ("tar", "find"):
            self.events.append(("run", "root", tuple(argv), False))
            real = [os.fspath(archives) if a == "/var/cache/apt/archives" else a for a in argv]
            stdin = kw.get("stdin")
            proc = subprocess.run(
                real, stdin=stdin, stdout=kw.get("stdout") or subprocess.PIPE, check=True
            )
            return RunResult(0, proc.stdout or b"")
        if kw.get("user") == "root" and argv[:2] == ["apt-get", "update"]:
            # "apt downloads" a package into the target's own cache
            (archives / "new_1.0_amd64.deb").write_bytes(b"downloaded")
            (archives / "evil name.deb").write_bytes(b"refused name")
        return super().run(argv, **kw)


def test_debs_are_copied_in_and_out_when_not_bound(world: World) -> None:
    cache = world.home.package_cache
    cache.mkdir(parents=True)
    (cache / "old_1_amd64.deb").write_bytes(b"cached")
    (cache / "other_1_arm64.deb").write_bytes(b"wrong arch")

    def make(suite: str, arch: str) -> Target:
        t = CopyingDebs(
            TargetConfig(home=world.home, suite=suite, arch=arch, distro="debian"),
            world.events, world.tmp / "targets",
        )  # fmt: skip
        world.targets.append(t)
        return t

    Builder(world.desc(), world.home, BuildOptions(), make, out=io.StringIO()).run()
    archives = world.targets[0].area / "archives"
    assert (archives / "old_1_amd64.deb").read_bytes() == b"cached"  # pushed in
    assert not (archives / "other_1_arm64.deb").exists()  # other architectures stay out
    assert (cache / "new_1.0_amd64.deb").read_bytes() == b"downloaded"  # pulled out
    assert not (cache / "evil name.deb").exists()
    assert not list(cache.glob(".incoming-*"))
