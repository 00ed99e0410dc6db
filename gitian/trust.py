"""Which keys may sign for which signer directory (``gverify --trusted-keys``).

Three line formats are read, ``#`` comments and blank lines aside:

* ``SIGNER KEYID FINGERPRINT`` - the ``signer-keyids.txt`` of a sigs tree;
* ``SIGNER FINGERPRINT``;
* ``FINGERPRINT Name`` and ``FINGERPRINT Name (handle, ...)`` - Bitcoin's
  ``contrib/builder-keys/keys.txt`` and ``contrib/gitian-keys/keys.txt``.
  The handle in the closing parentheses (its first comma-separated item, if
  it is a sanitary directory name) binds the key to that signer directory.
  A line without one makes the key trusted without binding it to any
  directory: a signature by it is OK, reported as signed by that name.  The
  words of a name never bind (``Pieter Wuille`` does not make ``Pieter`` a
  signer, nor does ``(Location: Leuven, Belgium)`` make a handle).

Handles match directory names case-insensitively (Bitcoin's file writes
``(Emzy)`` for the directory ``emzy``).  A fingerprint may be a primary key's
or a signing subkey's.

A keys directory laid out ``<dir>/<signer>.{asc,gpg,pgp}`` (guix.sigs'
``builder-keys/``, Monero's ``gitian-pubkeys/``) binds each signer to the
keys in its own file (:meth:`TrustedKeys.from_keys_dir`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gitian import gpgkeys
from gitian.descriptor import SANITARY
from gitian.errors import InputError
from gitian.text import printable

MAX_FILE_BYTES = 4 * 1024 * 1024
#: The key files of a keys directory, ``<signer><suffix>``.
KEYS_DIR_SUFFIXES = (".asc", ".gpg", ".pgp")

_FPR = re.compile(r"(?:0x)?([0-9A-Fa-f]{40}|[0-9A-Fa-f]{64})")
_KEYID = re.compile(r"(?:0x)?[0-9A-Fa-f]{1,16}")
_HANDLE = re.compile(r"\(([^()]*)\)\s*$")


@dataclass(frozen=True, slots=True)
class TrustedKeys:
    """Key bindings read from one or more trusted-keys files.

    ``bindings`` maps a signer directory name (casefolded) to the
    fingerprints that may sign for it; ``unbound`` maps the fingerprint of a
    key trusted for no directory in particular to its owner's name.
    """

    bindings: dict[str, frozenset[str]] = field(default_factory=dict)
    unbound: dict[str, str] = field(default_factory=dict)

    def keys_for(self, signer: str) -> frozenset[str]:
        return self.bindings.get(signer.casefold(), frozenset())

    def owners_of(self, fingerprints: Iterable[str]) -> list[str]:
        """The signer names bound to any of ``fingerprints``."""
        fps = set(fingerprints)
        return sorted(n for n, keys in self.bindings.items() if keys & fps)

    def name_of(self, fingerprints: Iterable[str]) -> str | None:
        """The name an unbound trusted key among ``fingerprints`` was given."""
        return next((self.unbound[f] for f in sorted(fingerprints) if f in self.unbound), None)

    def merged(self, other: TrustedKeys) -> TrustedKeys:
        bindings = dict(self.bindings)
        for k, v in other.bindings.items():
            bindings[k] = bindings.get(k, frozenset()) | v
        return TrustedKeys(bindings, {**self.unbound, **other.unbound})

    @classmethod
    def parse(cls, text: str, where: str) -> TrustedKeys:
        """Read the lines of one file; ``where`` names it in errors."""
        bindings: dict[str, set[str]] = {}
        unbound: dict[str, str] = {}
        for n, raw_line in enumerate(text.split("\n"), 1):
            line = raw_line.strip()
            if not line or line.startswith("#"):
                continue
            words = line.split()
            first = _FPR.fullmatch(words[0])
            if first:
                fpr = first.group(1).upper()
                name = line[len(words[0]) :].strip()
                if not name:
                    raise InputError(f"{where}:{n}: a fingerprint without a name or handle")
                handle = _handle(name)
                if handle is None:
                    unbound[fpr] = name
                else:
                    bindings.setdefault(handle.casefold(), set()).add(fpr)
                continue
            last = _FPR.fullmatch(words[-1])
            if last and (
                len(words) == 2 or (len(words) == 3 and _KEYID.fullmatch(words[1]) is not None)
            ):
                if not _sanitary(words[0]):
                    raise InputError(
                        f"{where}:{n}: {printable(words[0], quote=True)} is not a signer name"
                    )
                bindings.setdefault(words[0].casefold(), set()).add(last.group(1).upper())
                continue
            raise InputError(
                f"{where}:{n}: not 'SIGNER KEYID FINGERPRINT', 'SIGNER FINGERPRINT' "
                f"nor 'FINGERPRINT Name (handle)': {printable(line, quote=True, limit=80)}"
            )
        if not bindings and not unbound:
            raise InputError(f"{where}: no keys in the file")
        return cls({k: frozenset(v) for k, v in bindings.items()}, unbound)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrustedKeys:
        shown = printable(os.fspath(path))
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            raise InputError(f"--trusted-keys: cannot read {shown}: {e.strerror}") from None
        if len(raw) > MAX_FILE_BYTES:
            raise InputError(f"--trusted-keys: {shown} is larger than {MAX_FILE_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"--trusted-keys: {shown} is not UTF-8 text") from None
        return cls.parse(text, shown)

    @classmethod
    def from_keys_dir(
        cls, directory: Path, home: Path, *, program: Sequence[str] = ("gpg",)
    ) -> tuple[TrustedKeys, list[Path]]:
        """Bind each ``<signer>.{asc,gpg,pgp}`` in ``directory`` to the keys in it
        (asked of gpg in ``home``); the bindings and the key files.

        A file gpg reads no key from binds its signer to nothing, so that
        signer's signatures are WRONG KEY.
        """
        shown = printable(os.fspath(directory))
        if not directory.is_dir():
            raise InputError(f"--keys-dir: {shown} is not a directory")
        files = sorted(
            p
            for p in directory.iterdir()
            if p.suffix in KEYS_DIR_SUFFIXES and _sanitary(p.stem) and p.is_file()
        )
        if not files:
            raise InputError(
                f"--keys-dir: no <signer>{'/'.join(KEYS_DIR_SUFFIXES)} files in {shown}"
            )
        bindings: dict[str, frozenset[str]] = {}
        for f, fprs in gpgkeys.key_fingerprints(files, home, program=program).items():
            signer = f.stem.casefold()
            bindings[signer] = bindings.get(signer, frozenset()) | fprs
        return cls(bindings), files

    @classmethod
    def load_all(cls, paths: Iterable[str | os.PathLike[str]]) -> TrustedKeys | None:
        """The files' bindings together (``None`` for no files)."""
        out: TrustedKeys | None = None
        for p in paths:
            t = cls.load(p)
            out = t if out is None else out.merged(t)
        return out


def _sanitary(name: str) -> bool:
    return SANITARY.fullmatch(name) is not None and not name.startswith((".", "-"))


def _handle(name: str) -> str | None:
    """The handle a keys.txt name carries: ``Ford (fanquake)`` -> ``fanquake``,
    ``Gugger (guggero, Oliver Gugger)`` -> ``guggero``; None when there is no
    sanitary one (``(Location: Leuven, Belgium)`` is not a handle)."""
    m = _HANDLE.search(name)
    if m is None:
        return None
    handle = m.group(1).split(",")[0].strip()
    return handle if _sanitary(handle) else None
