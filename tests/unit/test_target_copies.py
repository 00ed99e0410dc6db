"""Copies into and out of a target, written once in Target over run().

A PrefixTarget whose prefix runs commands on this host (``env -i -C HOME``)
exercises the shared tar streams, their error paths and the filter for what
comes back, in milliseconds; every real backend runs the same code in
tests/integration (check_copies) and the SSH backends in test_ssh_exec.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from gitian.errors import TargetError
from gitian.home import Home
from gitian.targets.base import BaseOptions, PrefixTarget, TargetConfig


class OnHost(PrefixTarget):
    """Runs every command on this host, in a directory standing for the user's home."""

    name = "on-host"

    def __init__(self, config: TargetConfig, area: Path) -> None:
        super().__init__(config)
        self.area = area

    @classmethod
    def unavailable_reason(cls, *, for_base: bool = False, config: object = None) -> str | None:
        return None

    def has_base(self) -> bool:
        return True

    def make_base(self, options: BaseOptions) -> None:
        raise NotImplementedError

    def reset(self) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...

    def prefix(
        self, *, user: str, env: Mapping[str, str], home: str, network: bool, interactive: bool
    ) -> list[str]:
        here = self.area / user
        here.mkdir(parents=True, exist_ok=True)
        return ["env", "-i", "-C", os.fspath(here), *(f"{k}={v}" for k, v in env.items())]


@pytest.fixture
def target(tmp_path: Path) -> OnHost:
    cfg = TargetConfig(home=Home(tmp_path / "home"), suite="s", arch="amd64", distro="debian")
    return OnHost(cfg, tmp_path / "target")


def test_a_tree_goes_in_and_comes_back(target: OnHost, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_bytes(b"data\n")
    (src / "link").symlink_to("sub/f")
    target.copy_to(src, "build")
    assert (target.area / "debian" / "build" / "tree" / "sub" / "f").read_bytes() == b"data\n"
    target.copy_to(src / "sub" / "f", "/" + os.fspath(tmp_path / "abs").lstrip("/"))
    assert (tmp_path / "abs" / "f").read_bytes() == b"data\n"
    back = tmp_path / "back"
    target.copy_from("build/tree", back)
    assert (back / "tree" / "sub" / "f").read_bytes() == b"data\n"
    assert os.readlink(back / "tree" / "link") == "sub/f"


def test_failures_are_target_errors(target: OnHost, tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="does not exist"):
        target.copy_to(tmp_path / "nope", "build")
    (target.area / "debian").mkdir(parents=True)
    (target.area / "debian" / "file").write_text("not a dir")
    one = tmp_path / "one"
    one.write_text("1")
    with pytest.raises(TargetError, match="copy-to-target failed: .*File exists"):
        target.copy_to(one, "file")
    with pytest.raises(TargetError, match="copy-from-target failed"):
        target.copy_from("build/nope", tmp_path / "back")
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    (unreadable / "x").write_text("x")
    (unreadable / "x").chmod(0)
    if os.geteuid() != 0:  # root reads it anyway
        with pytest.raises(TargetError, match="copy-to-target failed"):
            target.copy_to(unreadable, "build")


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _stream_from_target(target: OnHost, data: bytes) -> Path:
    blob = target.area / "debian" / "blob.tar"
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    return blob


def test_what_comes_back_is_filtered(target: OnHost, tmp_path: Path) -> None:
    dev = tarfile.TarInfo("dev")
    dev.type = tarfile.CHRTYPE
    _stream_from_target(target, _tar((tarfile.TarInfo("ok"), b"fine"), (dev, b"")))
    dest = tmp_path / "dest"
    with pytest.raises(TargetError, match="special file"):
        target.receive_tar(["cat", "blob.tar"], dest, user="debian")
    assert not (dest / "dev").exists()

    outside = tarfile.TarInfo("../escaped")
    _stream_from_target(target, _tar((outside, b"x")))
    with pytest.raises(TargetError, match="copy-from-target failed"):
        target.receive_tar(["cat", "blob.tar"], dest, user="debian")
    assert not (tmp_path / "escaped").exists()


def test_keep_selects_members_and_a_big_stream_never_blocks(target: OnHost, tmp_path: Path) -> None:
    big = os.urandom(3 * 1024 * 1024)
    want = tarfile.TarInfo("wanted.deb")
    other = tarfile.TarInfo("other.deb")
    _stream_from_target(target, _tar((other, big), (want, b"w")))
    dest = tmp_path / "dest"
    target.receive_tar(
        ["cat", "blob.tar"], dest, user="debian", keep=lambda m: m.name == "wanted.deb"
    )
    assert sorted(p.name for p in dest.iterdir()) == ["wanted.deb"]
    # A stream that breaks off half-way is an error, not a hang.
    _stream_from_target(target, _tar((other, big))[: 2 * 1024 * 1024])
    with pytest.raises(TargetError):
        target.receive_tar(["cat", "blob.tar"], tmp_path / "d2", user="debian")


def test_send_tar_unpacks_with_any_command(target: OnHost, tmp_path: Path) -> None:
    src = tmp_path / "debs"
    src.mkdir()
    for n in ("a.deb", "b.deb", "c.deb"):
        (src / n).write_text(n)
    target.send_tar(src, ["a.deb", "c.deb"], ["tar", "-C", ".", "-xf", "-"], user="root")
    assert sorted(p.name for p in (target.area / "root").iterdir()) == ["a.deb", "c.deb"]
