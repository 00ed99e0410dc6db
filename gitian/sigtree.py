"""Signature trees as gverify reads them: layouts, releases, signers, files.

Two layouts hold attestations, each ``<release>/<signer>/<file>``:

* **Gitian** (``sigs/<name>/`` as gsign writes it, or a sigs repository such
  as ``gitian.sigs`` with every release of every platform side by side at
  the top): ``<name>-build.assert`` and its detached signature ``.sig``;
* **Guix** (``guix.sigs``): ``<kind>.SHA256SUMS`` (``all``,
  ``noncodesigned``, ...) and its armored detached signature ``.asc``.

Everything here only looks (``lstat``, directory listings) until
:func:`read_capped` reads one file, and that only after ``lstat`` said it is
a regular file small enough, inside the tree.  Nothing is parsed here.
"""

from __future__ import annotations

import enum
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from gitian.descriptor import SANITARY
from gitian.errors import InputError
from gitian.text import printable

#: Entries of one signer directory looked at to find out what it attests.
MAX_SIGNER_FILES = 1000
#: Entries of a tree's top looked at to recognise its layout.
MAX_PROBE = 200

_GUIX_SUFFIX = ".SHA256SUMS"


class Layout(enum.Enum):
    """How attestations are named in a tree."""

    GITIAN = "gitian"
    GUIX = "guix"

    def attestation(self, package: str) -> str:
        """The file a signer signs for ``package`` (a descriptor name, a Guix kind)."""
        return f"{package}-build.assert" if self is Layout.GITIAN else f"{package}{_GUIX_SUFFIX}"

    def signature(self, package: str) -> str:
        return self.attestation(package) + (".sig" if self is Layout.GITIAN else ".asc")

    def package_of(self, filename: str) -> str | None:
        """The package an attestation or signature file name is for (None: neither)."""
        if self is Layout.GITIAN:
            base = filename.removesuffix(".sig")
            name = base.removesuffix("-build.assert")
        else:
            base = filename.removesuffix(".asc")
            name = base.removesuffix(_GUIX_SUFFIX)
        if name == base or not sanitary(name):
            return None
        return name


def sanitary(name: str) -> bool:
    """A name that may be a package, release or signer directory (``[A-Za-z0-9_.-]``)."""
    return SANITARY.fullmatch(name) is not None and name not in (".", "..")


class Refused(Exception):
    """A file we will not read; the message says why."""


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def resolve(path: str, root: str, what: str) -> str | None:
    """Where a symlink at ``path`` leads, if inside ``root`` (None: to nothing)."""
    try:
        real = os.path.realpath(path, strict=True)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise Refused(f"the {what} is a symlink that cannot be followed: {e.strerror}") from None
    if not _inside(real, root):
        raise Refused(
            f"the {what} is a symlink leading out of the signature tree "
            f"(to {printable(real)}); not followed"
        )
    return real


def read_capped(path: str, root: str, cap: int, what: str) -> bytes | None:
    """Read ``path`` (None when it does not exist), refusing escapes and oversize.

    A symlink is followed only when it stays inside ``root``.  What the path
    leads to is looked at (``lstat``) before it is opened, and only a regular
    file is opened, so a FIFO or a device is never opened at all; the file
    opened must be the one looked at, and at most ``cap`` bytes are read.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise Refused(f"cannot look at the {what}: {e.strerror}") from None
    target = path
    if stat.S_ISLNK(st.st_mode):
        real = resolve(path, root, what)
        if real is None:
            return None
        target = real
        st = os.lstat(target)
    if not stat.S_ISREG(st.st_mode):
        raise Refused(f"the {what} is not a regular file")
    if st.st_size > cap:
        raise Refused(f"the {what} is larger than {cap} bytes ({st.st_size}); not read")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(target, flags)
    except OSError as e:
        raise Refused(f"cannot open the {what}: {e.strerror}") from None
    try:
        fst = os.fstat(fd)
        if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(fst.st_mode):
            raise Refused(f"the {what} changed while it was being read")
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, min(1 << 20, cap + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:
                raise Refused(f"the {what} is larger than {cap} bytes; not read")
        return b"".join(chunks)
    finally:
        os.close(fd)


def list_signers(release_dir: str) -> list[tuple[str, str | None]]:
    """Every signer directory name, sorted, each with a refusal reason or ``None``.

    Plain files are not signers and are skipped (as in the classic tool).
    """
    root = os.path.realpath(release_dir)
    try:
        with os.scandir(release_dir) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        raise InputError(f"{printable(release_dir)}: cannot list: {e.strerror}") from None
    out: list[tuple[str, str | None]] = []
    for entry in entries:
        try:
            if entry.is_symlink():
                try:
                    real = resolve(entry.path, root, "signer entry")
                except Refused as e:
                    out.append((entry.name, str(e)))
                    continue
                if real is None:
                    out.append((entry.name, "the signer entry is a symlink to nothing"))
                elif real == root:
                    out.append(
                        (
                            entry.name,
                            "the signer entry is a symlink leading back to the top of the "
                            "signature tree; not followed",
                        )
                    )
                elif os.path.isdir(real):
                    out.append((entry.name, None))
            elif entry.is_dir(follow_symlinks=False):
                out.append((entry.name, None))
        except OSError as e:
            out.append((entry.name, f"cannot look at the signer entry: {e.strerror}"))
    return out


def _names_in(directory: str) -> list[str]:
    """Up to :data:`MAX_SIGNER_FILES` entry names of ``directory`` (none if unreadable)."""
    names: list[str] = []
    try:
        with os.scandir(directory) as it:
            for entry in it:
                names.append(entry.name)
                if len(names) >= MAX_SIGNER_FILES:
                    break
    except OSError:
        pass
    return names


@dataclass(frozen=True, slots=True)
class Holdings:
    """What the signer entries of one release directory hold attestations for."""

    entries: tuple[tuple[str, str | None], ...]  # list_signers()
    packages: dict[str, frozenset[str]]  # package -> signers with a file for it

    def signers_for(self, package: str) -> frozenset[str] | None:
        """The entries a report for ``package`` judges, or None for every entry.

        When the release holds attestations of several of the packages asked
        about, an entry that holds files of others but none of ``package``'s
        is left out of ``package``'s report (it is in theirs); entries that
        hold none at all (empty, refused, only other files) are in every one.
        """
        if len(self.packages) < 2:
            return None
        others = frozenset().union(*(s for p, s in self.packages.items() if p != package))
        mine = self.packages.get(package, frozenset())
        return frozenset(n for n, _ in self.entries if n in mine or n not in others)


def holdings(
    release_dir: str, layout: Layout, wanted: frozenset[str] | None, limit: int
) -> Holdings:
    """Which packages (of ``wanted``; None: any) the first ``limit`` signer
    entries of ``release_dir`` hold an attestation or a signature for."""
    entries = list_signers(release_dir)
    packages: dict[str, set[str]] = {}
    for name, refused in entries[:limit]:
        if refused:
            continue
        for f in _names_in(os.path.join(release_dir, name)):
            package = layout.package_of(f)
            if package is not None and (wanted is None or package in wanted):
                packages.setdefault(package, set()).add(name)
    return Holdings(tuple(entries), {p: frozenset(s) for p, s in sorted(packages.items())})


def release_dirs(top: str) -> list[str]:
    """The sanitary directory names right under ``top``, sorted; symlinks only
    when they lead to a directory inside ``top`` (as for signers)."""
    return [n for n, refused in list_signers(top) if refused is None and sanitary(n)]


def looks_like_guix(release_dirs_: Iterable[str]) -> bool:
    """Whether some of these release directories hold ``<signer>/<kind>.SHA256SUMS``
    (only the first :data:`MAX_PROBE` are looked into)."""
    for n, rel in enumerate(release_dirs_):
        if n >= MAX_PROBE:
            break
        for signer in _names_in(rel)[:MAX_PROBE]:
            if any(
                Layout.GUIX.package_of(f) is not None for f in _names_in(os.path.join(rel, signer))
            ):
                return True
    return False


def releases_hint(release_dir: str) -> str:
    """A hint naming the releases beside ``release_dir`` (which does not exist)."""
    parent = os.path.dirname(os.path.normpath(release_dir)) or "."
    try:
        with os.scandir(parent) as it:
            names = sorted(e.name for e in it if e.is_dir())
    except OSError:
        return f"{printable(parent)} cannot be listed either"
    if not names:
        return f"there are no releases in {printable(parent)}"
    shown = ", ".join(printable(n) for n in names[:30])
    more = f" and {len(names) - 30} more" if len(names) > 30 else ""
    return f"releases in {printable(parent)}: {shown}{more}"
