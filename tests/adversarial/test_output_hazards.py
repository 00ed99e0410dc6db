"""Output hazards (issue 6, item 4): what a hostile build leaves in ``out/``.

The build script is written by someone else and runs on the target; what it
leaves in ``$OUTDIR`` is copied back and hashed on the host by
:func:`gitian.hashing.hash_tree`.  The rules are documented in
docs/descriptors.md ("What the manifest records"); these tests hold the
hasher to them, and add what a hostile tree can try beyond them:

* nothing outside the tree is ever opened (an audit hook records every open),
* nothing blocks (FIFOs, links to FIFOs, devices),
* every refusal is an :class:`OutputHazardError` (a ``BuildError``, so gbuild
  fails cleanly) with a one-line, printable message - never a crash,
* names that could move a terminal's cursor (C0/C1 controls, bidirectional
  overrides) never reach the manifest, which gbuild prints,
* ordinary files keep the classic ``sha256sum`` lines.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitian.hashing import OutputHazardError, hash_tree, manifest_text


def require_root() -> None:
    """Skip without root; in CI (as tests/conftest.py does it) a skip is a failure."""
    if os.geteuid() != 0:
        if os.environ.get("CI") or os.environ.get("GITIAN_STRICT_SKIPS"):
            pytest.fail("needs root (skips are failures in CI)")
        pytest.skip("needs root")


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# -- an audit hook that records every file opened while hashing -----------------

_OPENED: list[str] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _OPENED is not None and event == "open" and args and isinstance(args[0], (str, bytes)):
        p = args[0]
        _OPENED.append(os.fsdecode(p))


sys.addaudithook(_audit)


def hash_watched(root: Path) -> tuple[list[tuple[str, str]] | OutputHazardError, list[str]]:
    """hash_tree(root), in a thread with a timeout (a FIFO must never block),
    returning its result or its OutputHazardError, and every path opened."""
    global _OPENED
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["ok"] = hash_tree(root, where="build/out")
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            box["err"] = e

    _OPENED = []
    try:
        t = threading.Thread(target=work, daemon=True)
        t.start()
        t.join(timeout=10)
        assert not t.is_alive(), "hashing blocked"
    finally:
        opened, _OPENED = _OPENED, None
    if "err" in box:
        err = box["err"]
        assert isinstance(err, OutputHazardError), f"not an OutputHazardError: {err!r}"
        msg = str(err)
        assert "\n" not in msg and msg.isprintable(), repr(msg)
        assert msg.startswith("build/out"), msg
        return err, opened
    return box["ok"], opened


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(out, outside): a build output directory and a secret next to it."""
    out = tmp_path / "build" / "out"
    out.mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key").write_bytes(b"do not read me")
    yield out, outside


def _no_outside_reads(opened: list[str], out: Path) -> None:
    real_out = os.path.realpath(out)
    for p in opened:
        rp = os.path.realpath(p)
        assert rp == real_out or rp.startswith(real_out + os.sep), f"opened {p} ({rp})"


# -- links leaving the tree -------------------------------------------------------


@pytest.mark.parametrize(
    "how",
    ["absolute", "relative", "via-dir-link", "chain", "dir-outside", "proc-self", "to-root"],
)
def test_links_out_of_the_tree_are_refused_and_never_followed(
    world: tuple[Path, Path], how: str
) -> None:
    out, outside = world
    if how == "absolute":
        (out / "l").symlink_to(outside / "key")
    elif how == "relative":
        (out / "sub").mkdir()
        (out / "sub" / "l").symlink_to("../../../secret/key")
    elif how == "via-dir-link":
        (out / "d").symlink_to(outside)
        (out / "l").symlink_to("d/key")
    elif how == "chain":
        (out / "a").symlink_to("b")
        (out / "b").symlink_to(outside / "key")
    elif how == "dir-outside":
        (out / "d").symlink_to(outside)
    elif how == "proc-self":
        (out / "l").symlink_to("/proc/self/environ")
    else:
        (out / "l").symlink_to("/")
    (out / "ok").write_bytes(b"fine")
    res, opened = hash_watched(out)
    assert isinstance(res, OutputHazardError), res
    assert "symbolic link" in str(res)
    _no_outside_reads(opened, out)


@pytest.mark.parametrize("how", ["dangling", "self-loop", "two-loop"])
def test_dangling_and_looping_links_are_refused(world: tuple[Path, Path], how: str) -> None:
    out, _ = world
    if how == "dangling":
        (out / "l").symlink_to("nowhere")
    elif how == "self-loop":
        (out / "l").symlink_to("l")
    else:
        (out / "a").symlink_to("b")
        (out / "b").symlink_to("a")
    res, opened = hash_watched(out)
    assert isinstance(res, OutputHazardError), res
    _no_outside_reads(opened, out)


def test_links_inside_follow_the_documented_rules(world: tuple[Path, Path]) -> None:
    out, _ = world
    (out / "real").write_bytes(b"content")
    (out / "sub").mkdir()
    (out / "sub" / "up").symlink_to("../real")
    (out / "dirlink").symlink_to("sub")  # a link to a directory inside: skipped
    (out / "rootlink").symlink_to(".")  # the tree itself: skipped, no loop
    res, opened = hash_watched(out)
    assert not isinstance(res, OutputHazardError), res
    assert res == [(_sha(b"content"), "real"), (_sha(b"content"), "sub/up")]
    _no_outside_reads(opened, out)


# -- special files ---------------------------------------------------------------


def test_fifo_is_refused_without_blocking(world: tuple[Path, Path]) -> None:
    out, _ = world
    os.mkfifo(out / "fifo")
    res, _ = hash_watched(out)
    assert isinstance(res, OutputHazardError) and "FIFO" in str(res), res


def test_link_to_fifo_outside_is_refused_without_blocking(world: tuple[Path, Path]) -> None:
    out, outside = world
    os.mkfifo(outside / "fifo")
    (out / "l").symlink_to(outside / "fifo")
    res, opened = hash_watched(out)
    assert isinstance(res, OutputHazardError), res
    _no_outside_reads(opened, out)


def test_socket_is_refused(world: tuple[Path, Path]) -> None:
    out, _ = world
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(os.fspath(out / "sock"))
        res, _ = hash_watched(out)
    finally:
        s.close()
    assert isinstance(res, OutputHazardError) and "socket" in str(res), res


@pytest.mark.parametrize(("kind", "mode"), [("char", stat.S_IFCHR), ("block", stat.S_IFBLK)])
def test_device_nodes_are_refused_and_never_opened(
    world: tuple[Path, Path], kind: str, mode: int
) -> None:
    require_root()
    out, _ = world
    # /dev/zero (1,5) would hash forever; /dev/loop0-like (7,0) reads a disk
    dev = os.makedev(1, 5) if kind == "char" else os.makedev(7, 0)
    os.mknod(out / "dev", mode | 0o666, dev)
    res, opened = hash_watched(out)
    assert isinstance(res, OutputHazardError) and "device" in str(res), res
    assert not any(p.endswith("/dev") for p in opened), opened


# -- names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "new\nline",
        "car\rriage",
        "tab\there",
        "esc\x1b[2Jape",
        "bell\x07",
        "del\x7f",
        "csi\x9b31m",  # C1 CSI: an escape sequence on many terminals
        "nel\x85next",  # C1 next line
        "rtl\u202etxt.exe",  # bidirectional override (Trojan Source)
        "ls\u2028sep",  # Unicode line separator
    ],
    ids=["LF", "CR", "TAB", "ESC", "BEL", "DEL", "C1-CSI", "C1-NEL", "RLO", "LSEP"],
)
def test_names_that_break_lines_or_terminals_are_refused(
    world: tuple[Path, Path], name: str
) -> None:
    out, _ = world
    (out / name).write_bytes(b"x")
    res, _ = hash_watched(out)
    assert isinstance(res, OutputHazardError), f"recorded {res!r}"


def test_non_utf8_name_is_refused(world: tuple[Path, Path]) -> None:
    out, _ = world
    with open(os.path.join(os.fsencode(out), b"bad\xff"), "wb") as f:
        f.write(b"x")
    res, _ = hash_watched(out)
    assert isinstance(res, OutputHazardError), res


def test_ordinary_hostile_looking_names_are_recorded_like_sha256sum(
    world: tuple[Path, Path],
) -> None:
    """Spaces, quotes, shell metacharacters, dashes, dotfiles, backslashes: the
    classic behaviour, byte-identical to GNU sha256sum run in out/."""
    out, _ = world
    names = [
        "with space",
        "  leading",
        "-rf",
        "--help",
        ".hidden",
        "..dots",
        "$(id)",
        "`id`",
        "a;b|c&d",
        "quote'\"",
        "glob*?[x]",
        "back\\slash",
        "ünïcødé",
        "x" * 255,
    ]
    (out / "sub dir").mkdir()
    for n in names:
        (out / n).write_bytes(n.encode())
    (out / "sub dir" / "inner file").write_bytes(b"i")
    res, opened = hash_watched(out)
    assert not isinstance(res, OutputHazardError), res
    rels = sorted([*names, "sub dir/inner file"], key=lambda s: s.encode())
    expected = subprocess.run(
        ["sha256sum", "--", *rels], cwd=out, capture_output=True, check=True
    ).stdout.decode()
    assert manifest_text(res) == expected
    _no_outside_reads(opened, out)


def _deep_tree(root: Path, depth: int) -> None:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        wfd = os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(wfd, b"deep")
        os.close(wfd)
    finally:
        os.close(fd)


@pytest.fixture(params=["past-recursion-limit", "past-PATH_MAX"])
def deep_out(
    world: tuple[Path, Path], request: pytest.FixtureRequest
) -> Iterator[tuple[Path, int]]:
    """``out`` holding directories nested deeper than Python's recursion limit,
    or so deep that their paths exceed PATH_MAX (4096): a build can make both
    (shutil.rmtree recurses too, so clean up with rm)."""
    out, _ = world
    depth = sys.getrecursionlimit() + 200 if request.param == "past-recursion-limit" else 2500
    _deep_tree(out, depth)
    try:
        yield out, depth
    finally:
        subprocess.run(["rm", "-rf", "--", os.fspath(out.parent)], check=False)


def test_deep_directory_nesting_is_not_a_crash(deep_out: tuple[Path, int]) -> None:
    """A build can nest directories deeper than Python's recursion limit."""
    out, depth = deep_out
    res, _ = hash_watched(out)
    # Either recorded (one line) or refused with a clear error; never a RecursionError.
    if not isinstance(res, OutputHazardError):
        assert res == [(_sha(b"deep"), "/".join(["d"] * depth) + "/f")]


def test_next_gbuild_wipes_a_deep_build_tree(
    deep_out: tuple[Path, int], tmp_path: Path
) -> None:
    """gbuild wipes build/ first: a deep tree left by a hostile build must not
    crash the next build (nor stop it from starting)."""
    from gitian.build import Builder, BuildOptions
    from gitian.descriptor import parse
    from gitian.errors import TargetError
    from gitian.home import Home

    out, _ = deep_out
    home = Home(out.parent.parent)
    desc = parse(
        b"name: pkg\nsuites: [bookworm]\narchitectures: [amd64]\n"
        b"reference_datetime: '2020-01-01 00:00:00'\n"
    )

    def no_target(suite: str, arch: str) -> Any:
        raise TargetError("no target in this test")

    with pytest.raises(TargetError, match="no target in this test"):
        Builder(desc, home, BuildOptions(quiet=True), no_target).run()
    assert not (home.build / "out").exists()


def test_many_files_and_empty_dirs(world: tuple[Path, Path]) -> None:
    out, _ = world
    for i in range(2000):
        (out / f"f{i:04d}").write_bytes(b"")
    (out / "empty").mkdir()
    res, _ = hash_watched(out)
    assert not isinstance(res, OutputHazardError)
    assert len(res) == 2000 and {h for h, _ in res} == {_sha(b"")}


def test_out_itself_a_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    real.mkdir()
    (real / "f").write_bytes(b"x")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "out").symlink_to(real)
    with pytest.raises(OutputHazardError):
        hash_tree(tmp_path / "build" / "out")


# -- the copy out of the target: a forged tar stream ------------------------------
#
# With ``sudo: true`` and ``--allow-sudo`` the script is root on the target and
# can replace its tar, so what reaches the host is any tar stream at all.


class _ForgedStream:
    """A PrefixTarget whose "target" answers every command with a fixed tar stream."""

    @staticmethod
    def make(home: Path, stream: Path) -> Any:
        from gitian.home import Home
        from gitian.targets.base import PrefixTarget, TargetConfig

        class Forged(PrefixTarget):
            name = "forged"

            @classmethod
            def unavailable_reason(
                cls, *, for_base: bool = False, config: object = None
            ) -> str | None:
                return None

            def make_base(self, options: Any) -> None: ...

            def has_base(self) -> bool:
                return True

            def reset(self) -> None: ...

            def start(self) -> None: ...

            def wait_ready(self, timeout: float = 60) -> None: ...

            def stop(self) -> None: ...

            def prefix(
                self, *, user: str, env: Any, home: str, network: bool, interactive: bool
            ) -> list[str]:
                return ["sh", "-c", 'exec cat -- "$0"', os.fspath(stream)]

        cfg = TargetConfig(home=Home(home), suite="bookworm", arch="amd64", distro="debian")
        return Forged(cfg)


def _tar(path: Path, members: list[tuple[Any, bytes | None]]) -> None:
    import io
    import tarfile

    with tarfile.open(path, "w") as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data is not None else None)


def _info(name: str, kind: bytes = b"0", **kw: Any) -> Any:
    import tarfile

    ti = tarfile.TarInfo(name)
    ti.type = kind
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


FORGED_CASES = [
    "char-device",
    "block-device",
    "fifo",
    "dotdot",
    "write-through-symlink",
    "hardlink-relative-outside",
    "hardlink-absolute",
    "hardlink-via-symlink",
]


@pytest.mark.parametrize("case", FORGED_CASES)
def test_forged_stream_from_target_cannot_reach_the_host(tmp_path: Path, case: str) -> None:
    """Refused as a TargetError; no host file outside the copy is created,
    linked or written (a hard link followed by a member of the same name
    would write through into the host file)."""
    import tarfile

    from gitian.errors import TargetError

    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_bytes(b"host file")
    dest = tmp_path / "home" / "build"
    dest.mkdir(parents=True)
    dev = {"devmajor": 1, "devminor": 3, "mode": 0o666}
    m: list[tuple[Any, bytes | None]] = [(_info("out", tarfile.DIRTYPE, mode=0o755), None)]
    if case == "char-device":
        m.append((_info("out/disk", tarfile.CHRTYPE, **dev), None))
    elif case == "block-device":
        m.append((_info("out/disk", tarfile.BLKTYPE, **dev), None))
    elif case == "fifo":
        m.append((_info("out/pipe", tarfile.FIFOTYPE, mode=0o666), None))
    elif case == "dotdot":
        m.append((_info("out/../../outside/new", size=1), b"x"))
    elif case == "write-through-symlink":
        m.append((_info("out/l", tarfile.SYMTYPE, linkname=os.fspath(outside)), None))
        m.append((_info("out/l/victim", size=6), b"pwned!"))
    elif case == "hardlink-relative-outside":
        m.append((_info("out/h", tarfile.LNKTYPE, linkname="../outside/victim"), None))
        m.append((_info("out/h", size=6), b"pwned!"))
    elif case == "hardlink-absolute":
        m.append((_info("out/h", tarfile.LNKTYPE, linkname=os.fspath(victim)), None))
        m.append((_info("out/h", size=6), b"pwned!"))
    else:
        m.append((_info("out/s", tarfile.SYMTYPE, linkname=os.fspath(victim)), None))
        m.append((_info("out/h", tarfile.LNKTYPE, linkname="out/s"), None))
        m.append((_info("out/h", size=6), b"pwned!"))
    stream = tmp_path / "forged.tar"
    _tar(stream, m)
    target = _ForgedStream.make(tmp_path / "home", stream)
    with pytest.raises(TargetError):
        target.copy_from("out", dest)
    assert victim.read_bytes() == b"host file"
    assert victim.stat().st_nlink == 1, "a host file was hard-linked into the copy"
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    for p in dest.rglob("*"):
        mode = p.lstat().st_mode
        assert not (stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode)), p


def test_forged_stream_absolute_names_stay_inside(tmp_path: Path) -> None:

    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "home" / "build"
    dest.mkdir(parents=True)
    stream = tmp_path / "forged.tar"
    _tar(stream, [(_info(os.fspath(outside / "new"), size=1), b"x")])
    try:
        _ForgedStream.make(tmp_path / "home", stream).copy_from("out", dest)
    except Exception as e:  # noqa: BLE001 - refusing is fine too
        from gitian.errors import TargetError

        assert isinstance(e, TargetError), e
    assert list(outside.iterdir()) == []


def test_forged_stream_setuid_and_foreign_owner_are_dropped(tmp_path: Path) -> None:
    import tarfile

    dest = tmp_path / "home" / "build"
    dest.mkdir(parents=True)
    stream = tmp_path / "forged.tar"
    _tar(
        stream,
        [
            (_info("out", tarfile.DIRTYPE, mode=0o755), None),
            (_info("out/suid", size=2, mode=0o6777, uid=0, gid=0), b"#!"),
            (_info("out/theirs", size=1, mode=0o644, uid=4242, gid=4242), b"x"),
        ],
    )
    _ForgedStream.make(tmp_path / "home", stream).copy_from("out", dest)
    suid = (dest / "out" / "suid").stat()
    assert not suid.st_mode & (stat.S_ISUID | stat.S_ISGID), oct(suid.st_mode)
    assert not suid.st_mode & stat.S_IWOTH, oct(suid.st_mode)
    theirs = (dest / "out" / "theirs").stat()
    assert (theirs.st_uid, theirs.st_gid) == (os.geteuid(), os.getegid())


def test_hard_link_inside_the_copy_is_kept(tmp_path: Path) -> None:
    """The classic case: two names for one file in out/ still arrive (and hash) as files."""
    import tarfile

    dest = tmp_path / "home" / "build"
    dest.mkdir(parents=True)
    stream = tmp_path / "stream.tar"
    _tar(
        stream,
        [
            (_info("out", tarfile.DIRTYPE, mode=0o755), None),
            (_info("out/a", size=4, mode=0o644), b"data"),
            (_info("out/b", tarfile.LNKTYPE, linkname="out/a"), None),
        ],
    )
    _ForgedStream.make(tmp_path / "home", stream).copy_from("out", dest)
    assert hash_tree(dest / "out") == [(_sha(b"data"), "a"), (_sha(b"data"), "b")]


def test_reset_removes_a_deep_tree_the_build_left_in_the_target(tmp_path: Path) -> None:
    """Everything the script wrote on an overlay target lives in the upper
    layer; reset() (every gbuild, "Making a new image copy") must remove a
    tree nested deeper than Python's recursion limit, or every later build
    fails."""
    from gitian.home import Home
    from gitian.targets.rootfs import Overlay

    home = Home(tmp_path / "home")
    ov = Overlay.for_home(home, "bookworm", "amd64")
    (ov.upper / "home" / "debian").mkdir(parents=True)
    ov.work.mkdir(parents=True)
    try:
        _deep_tree(ov.upper / "home" / "debian", sys.getrecursionlimit() + 200)
        ov.reset()
        assert not ov.upper.exists()
    finally:
        subprocess.run(["rm", "-rf", "--", os.fspath(home.root)], check=False)
