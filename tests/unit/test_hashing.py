"""In-process tree hashing and the output hazard rules."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
from pathlib import Path

import pytest

from gitian.errors import BuildError
from gitian.hashing import OutputHazardError, hash_tree, manifest_text, sha256_file


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def test_sha256_file_small_and_mmap(tmp_path: Path) -> None:
    small = tmp_path / "s"
    small.write_bytes(b"abc")
    big = tmp_path / "b"
    data = os.urandom((1 << 20) + 12345)  # more than one read
    big.write_bytes(data)
    empty = tmp_path / "e"
    empty.write_bytes(b"")
    assert sha256_file(small) == _sha(b"abc")
    assert sha256_file(big) == _sha(data)
    assert sha256_file(empty) == _sha(b"")


def test_tree_matches_sha256sum_sorted_with_dotfiles(tmp_path: Path) -> None:
    files = {
        "b.tar.gz": b"1",
        "a/x": b"2",
        "a-b": b"3",
        ".hidden": b"4",
        "a/.dot/y": b"5",
        "Z": b"6",
        "sp ace": b"7",
        "ünï": b"8",
    }
    _tree(tmp_path, files)
    entries = hash_tree(tmp_path)
    names = [rel for _, rel in entries]
    # byte order of the relative paths, as the classic sorted glob gave
    assert names == sorted(files, key=lambda s: s.encode())
    text = manifest_text(entries)
    # exactly what sha256sum prints for the same names
    expected = subprocess.run(
        ["sha256sum", "--", *names], cwd=tmp_path, capture_output=True, check=True
    ).stdout.decode()
    assert text == expected


def test_backslash_escaped_like_sha256sum(tmp_path: Path) -> None:
    _tree(tmp_path, {"a\\b": b"x"})
    text = manifest_text(hash_tree(tmp_path))
    expected = subprocess.run(
        ["sha256sum", "a\\b"], cwd=tmp_path, capture_output=True, check=True
    ).stdout.decode()
    assert text == expected
    assert text.startswith("\\")


def test_empty_directories_are_not_listed_and_missing_root_is_empty(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    assert hash_tree(tmp_path) == []
    assert hash_tree(tmp_path / "missing") == []


def test_symlink_inside_to_file_hashes_content(tmp_path: Path) -> None:
    _tree(tmp_path, {"real": b"content"})
    (tmp_path / "link").symlink_to("real")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "up").symlink_to("../real")
    entries = dict((rel, sha) for sha, rel in hash_tree(tmp_path))
    assert entries == {
        "link": _sha(b"content"),
        "real": _sha(b"content"),
        "sub/up": _sha(b"content"),
    }


def test_symlink_to_directory_inside_is_skipped(tmp_path: Path) -> None:
    _tree(tmp_path, {"d/f": b"x"})
    (tmp_path / "dl").symlink_to("d")
    assert [rel for _, rel in hash_tree(tmp_path)] == ["d/f"]


@pytest.mark.parametrize("target", ["/etc/passwd", "../outside", "/", "nonexistent"])
def test_symlink_leaving_the_tree_or_dangling_is_refused(tmp_path: Path, target: str) -> None:
    root = tmp_path / "out"
    root.mkdir()
    (tmp_path / "outside").write_bytes(b"secret")
    (root / "evil").symlink_to(target)
    with pytest.raises(OutputHazardError) as e:
        hash_tree(root, where="build/out")
    assert "build/out/evil" in e.value.message
    assert isinstance(e.value, BuildError)


def test_symlink_loop_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(OutputHazardError, match="does not resolve"):
        hash_tree(tmp_path)


def test_fifo_and_socket_are_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OutputHazardError, match="FIFO"):
        hash_tree(tmp_path)
    os.unlink(tmp_path / "fifo")
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(os.fspath(tmp_path / "sock"))
        with pytest.raises(OutputHazardError, match="socket"):
            hash_tree(tmp_path)
    finally:
        s.close()


def test_link_to_fifo_inside_is_refused(tmp_path: Path) -> None:
    sub = tmp_path / "x"
    sub.mkdir()
    os.mkfifo(tmp_path / "fifo")
    (sub / "l").symlink_to("../fifo")
    with pytest.raises(OutputHazardError, match="outside"):
        hash_tree(sub)  # the link leaves the hashed tree
    (tmp_path / "l2").symlink_to("x/../fifo")
    with pytest.raises(OutputHazardError, match="FIFO"):
        hash_tree(tmp_path)


@pytest.mark.parametrize("name", ["new\nline", "cr\rx", "tab\tx", "bell\x07"])
def test_control_characters_in_names_are_refused(tmp_path: Path, name: str) -> None:
    _tree(tmp_path, {name: b"x"})
    with pytest.raises(OutputHazardError, match="control character"):
        hash_tree(tmp_path)


def test_non_utf8_name_is_refused(tmp_path: Path) -> None:
    p = os.path.join(os.fsencode(tmp_path), b"bad\xff")
    with open(p, "wb") as f:
        f.write(b"x")
    with pytest.raises(OutputHazardError, match="not UTF-8"):
        hash_tree(tmp_path)


def test_root_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "out").symlink_to("real")
    with pytest.raises(OutputHazardError, match="symbolic link"):
        hash_tree(tmp_path / "out")


def test_hard_links_are_ordinary_files(tmp_path: Path) -> None:
    _tree(tmp_path, {"a": b"same"})
    os.link(tmp_path / "a", tmp_path / "b")
    assert [rel for _, rel in hash_tree(tmp_path)] == ["a", "b"]


def test_very_deep_tree(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        for _ in range(1500):  # deeper than Python's recursion limit
            os.mkdir("d", dir_fd=fd)
            nfd = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        with os.fdopen(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
            f.write(b"deep")
    finally:
        os.close(fd)
    entries = hash_tree(tmp_path)
    assert len(entries) == 1 and entries[0][1].endswith("/d/f")
