"""Fast in-process sha256 of files and trees, and the rules for odd outputs.

The classic gbuild ran one ``sha256sum`` process per file.  Here every file is
hashed in this process with :func:`hashlib.file_digest`, at the speed of
OpenSSL's SHA-256 (about 1 GB/s per core with the SHA extensions).

What a manifest records (the *output hazards*; docs/descriptors.md):

* regular files: ``<sha256>  <relative path>``, sorted by path, dotfiles
  included, exactly as the classic tool wrote them;
* a symbolic link that resolves, inside the tree, to a regular file: the line
  of that file's content under the link's own name (what ``sha256sum``
  following the link gave the classic tool); a link to a directory inside
  the tree is skipped, as the classic glob skipped it;
* a link that leaves the tree, dangles or loops, and any special file (FIFO,
  socket, device): refused with an error naming it - nothing outside the tree
  is ever read, and nothing ever blocks on a FIFO;
* file names must be UTF-8 without control characters (the classic tool
  refused even more); spaces and other characters are written verbatim, and a
  backslash is escaped the way GNU ``sha256sum`` does it (the line then
  starts with ``\\``).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from gitian.errors import BuildError


class OutputHazardError(BuildError):
    """A tree to be hashed holds something the manifest must not record."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 of the regular file at ``path`` (a final symlink is not followed,
    and nothing blocks on a FIFO: it is refused before a byte is read)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OutputHazardError(f"{os.fspath(path)} is not a regular file")
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_name(rel: str, where: str) -> None:
    """Refuse names the manifest cannot carry: non-UTF-8 or control characters."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise OutputHazardError(
            f"{where}/{rel.encode('utf-8', 'surrogateescape')!r}: file name is not UTF-8",
            hint="rename it in the build script; manifests are UTF-8 text",
        ) from None
    # isprintable() is false for C0/C1 controls, DEL, bidi overrides, zero-width
    # and line separators: anything that could move a terminal's cursor.
    if not rel.isprintable():
        raise OutputHazardError(
            f"{where}/{rel!r}: file name contains a control character or an invisible one",
            hint="rename it in the build script; one manifest line per file",
        )


def manifest_name(rel: str) -> tuple[bool, str]:
    """How ``sha256sum`` prints a name: (escaped?, text)."""
    if "\\" in rel:
        return True, rel.replace("\\", "\\\\")
    return False, rel


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "a special file"


def _walk(root: str, rel: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Every non-directory under ``root/rel``, depth first; never follows links.
    Iterative, so no tree is too deep for it."""
    stack = [rel]
    while stack:
        current = stack.pop()
        with os.scandir(os.path.join(root, current) if current else root) as it:
            entries = list(it)
        for e in entries:
            r = f"{current}/{e.name}" if current else e.name
            if e.is_dir(follow_symlinks=False):
                stack.append(r)
            else:
                yield r, e


def hash_tree(root: Path, *, where: str | None = None) -> list[tuple[str, str]]:
    """``(sha256, relative path)`` for every file under ``root``, sorted by path.

    Follows the rules in this module's docstring.  A missing ``root`` gives an
    empty list (the classic glob of a missing directory was empty too).
    ``where`` names the tree in errors (default: ``root``).
    """
    label = where or os.fspath(root)
    top = os.fspath(root)
    if not os.path.isdir(top) or os.path.islink(top):
        if os.path.lexists(top) and not os.path.isdir(top):
            raise OutputHazardError(f"{label} is not a directory")
        if os.path.islink(top):
            raise OutputHazardError(f"{label} is a symbolic link, not a directory")
        return []
    real_top = os.path.realpath(top)
    out: list[tuple[str, str]] = []
    try:
        for rel, entry in _walk(top, ""):
            check_name(rel, label)
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode):
                out.append((sha256_file(entry.path), rel))
            elif stat.S_ISLNK(st.st_mode):
                digest = _hash_link(entry.path, rel, real_top, label)
                if digest is not None:
                    out.append((digest, rel))
            else:
                raise OutputHazardError(
                    f"{label}/{rel} is {_kind(st.st_mode)}; manifests record regular files only",
                    hint="remove it from the output in the build script",
                )
    except OSError as e:
        # e.g. a tree so deep that its paths exceed PATH_MAX
        name = os.fspath(e.filename or "")
        shown = name if len(name) <= 120 else "..." + name[-117:]
        raise OutputHazardError(
            f"{label}: cannot read {shown!r}: {e.strerror}",
            hint="the build output must be a tree of ordinary files",
        ) from None
    out.sort(key=lambda e: e[1])
    return out


def _hash_link(path: str, rel: str, real_top: str, label: str) -> str | None:
    link = os.readlink(path)
    try:
        resolved = os.path.realpath(path, strict=True)
    except (OSError, RuntimeError):
        raise OutputHazardError(
            f"{label}/{rel} is a symbolic link to {link!r}, which does not resolve",
            hint="outputs must be files; dangling or looping links are refused",
        ) from None
    if resolved != real_top and not resolved.startswith(real_top + os.sep):
        raise OutputHazardError(
            f"{label}/{rel} is a symbolic link to {link!r}, outside {label}; refused",
            hint="links may only point at files inside the output directory",
        )
    st = os.stat(resolved, follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):
        return None  # the classic glob did not descend into linked directories
    if not stat.S_ISREG(st.st_mode):
        raise OutputHazardError(
            f"{label}/{rel} is a symbolic link to {_kind(st.st_mode)}; refused",
            hint="manifests record regular files only",
        )
    return sha256_file(resolved)


def manifest_text(entries: list[tuple[str, str]]) -> str:
    """The manifest lines for ``entries``, as ``sha256sum`` would print them."""
    # Imported here: gitian.manifest pulls in the YAML writer, which the hashing
    # benchmark and the pure hashing functions do not need.
    from gitian.manifest import manifest_lines

    plain: list[tuple[str, str]] = []
    parts: list[str] = []
    for sha, rel in entries:
        escaped, text = manifest_name(rel)
        if escaped:
            if plain:
                parts.append(manifest_lines(plain))
                plain = []
            parts.append(f"\\{sha}  {text}\n")
        else:
            plain.append((sha, text))
    if plain:
        parts.append(manifest_lines(plain))
    return "".join(parts)


def tree_bytes(root: Path) -> int:
    """Total size of the regular files under ``root`` (for throughput figures)."""
    total = 0
    for _, e in _walk(os.fspath(root), ""):
        if e.is_file(follow_symlinks=False):
            total += e.stat(follow_symlinks=False).st_size
    return total
