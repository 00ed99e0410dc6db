"""Public keys for gverify: reading key files, importing them into a throwaway
home, and asking gpg about keys (when they expire, what a file holds).

Every gpg run here is offline (:data:`gitian.gpg.OFFLINE_OPTIONS`), an argv
list, in a home named explicitly or the caller's own keyring; nothing is
ever written to a home that is not a throwaway one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from gitian.errors import InputError
from gitian.gpg import GPG_ENV, OFFLINE_OPTIONS, Keyring
from gitian.run import run
from gitian.text import printable

#: Files a key directory may hold (anything else there is ignored).
KEY_SUFFIXES = (".asc", ".gpg", ".pgp", ".key", ".pub")
MAX_KEY_FILE_BYTES = 16 * 1024 * 1024


def key_expiries(
    fingerprints: Sequence[str],
    *,
    keyring: Keyring | None = None,
    program: Sequence[str] = ("gpg",),
) -> dict[str, int]:
    """When each key (primary or subkey, by fingerprint) stops being valid:
    its own expiry or its primary key's, whichever comes first (seconds since
    1970; keys that never expire are left out).

    gpg reports a signature by a key that has expired by now as EXPKEYSIG
    whether it was made before or after that; the key's expiry tells which.
    """
    if not fingerprints:
        return {}
    keyring = keyring or Keyring()
    argv = [
        *program,
        *OFFLINE_OPTIONS,
        *keyring.options(),
        "--with-colons",
        "--fixed-list-mode",
        "--with-subkey-fingerprint",
        "--list-keys",
        "--",
        *sorted(set(fingerprints)),
    ]
    proc = _gpg(argv, timeout=120)
    out: dict[str, int] = {}
    primary_expires = 0
    expires = 0
    for line in proc.stdout.split(b"\n"):
        # Colon listings escape ':' and control characters inside fields.
        fields = line.split(b":")
        if fields[0] in (b"pub", b"sub") and len(fields) > 6:
            expires = int(fields[6]) if fields[6].isdigit() else 0
            if fields[0] == b"pub":
                primary_expires = expires
            ends = [e for e in (expires, primary_expires) if e]
            expires = min(ends) if ends else 0
        elif fields[0] == b"fpr" and len(fields) > 9 and expires:
            out[fields[9].decode("ascii", "replace")] = expires
    return out


def key_files(path: Path) -> list[Path]:
    """The key files in directory ``path`` (sorted), or ``path`` itself if it is a file."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(f"--import-keys: {printable(str(path))} is not a directory")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in KEY_SUFFIXES and p.is_file())
    if not files:
        raise InputError(
            f"--import-keys: no key files ({', '.join(KEY_SUFFIXES)}) in {printable(str(path))}"
        )
    return files


def key_fingerprints(
    files: Sequence[Path],
    home: Path,
    *,
    program: Sequence[str] = ("gpg",),
    jobs: int | None = None,
) -> dict[Path, frozenset[str]]:
    """The primary-key fingerprints each key file holds (``gpg --show-keys``
    in ``home``, one run per file, ``jobs`` at once; nothing is imported).

    gpg names no file in the listing of several, so each file gets its own
    run; a file gpg reads no key from maps to an empty set.
    """
    _check_sizes(files)

    def listing(f: Path) -> frozenset[str]:
        argv = [
            *program,
            *OFFLINE_OPTIONS,
            "--homedir",
            os.fspath(home),
            "--with-colons",
            "--show-keys",
            "--",
            os.fspath(f),
        ]
        try:
            return _primaries(_gpg(argv, timeout=120).stdout)
        except subprocess.TimeoutExpired:
            raise InputError(f"gpg did not read {printable(str(f))} within 120 s") from None

    with ThreadPoolExecutor(max_workers=max(1, jobs or os.cpu_count() or 1)) as pool:
        return dict(zip(files, pool.map(listing, files), strict=True))


def _primaries(listing: bytes) -> frozenset[str]:
    """The fingerprints of the ``pub`` records of a ``--with-colons`` listing."""
    found: set[str] = set()
    after_pub = False
    for line in listing.split(b"\n"):
        fields = line.split(b":")
        if fields[0] == b"fpr" and after_pub and len(fields) > 9:
            found.add(fields[9].decode("ascii", "replace").upper())
        after_pub = fields[0] == b"pub"
    return frozenset(found)


def _check_sizes(files: Sequence[Path]) -> None:
    for f in files:
        if f.stat().st_size > MAX_KEY_FILE_BYTES:
            raise InputError(
                f"{printable(str(f))}: larger than {MAX_KEY_FILE_BYTES} bytes, not a key file"
            )


def import_keys(home: Path, files: Sequence[Path], *, program: Sequence[str] = ("gpg",)) -> int:
    """Import public keys from ``files`` into ``home`` (one gpg run, offline);
    how many distinct keys were imported."""
    _check_sizes(files)
    argv = [
        *program,
        *OFFLINE_OPTIONS,
        "--homedir",
        os.fspath(home),
        "--status-fd",
        "1",
        "--import-options",
        "import-minimal",
        "--import",
        "--",
        *(os.fspath(f) for f in files),
    ]
    proc = _gpg(argv, timeout=300)
    imported = {
        words[3]
        for words in (line.split(b" ") for line in proc.stdout.split(b"\n"))
        if len(words) >= 4 and words[:2] == [b"[GNUPG:]", b"IMPORT_OK"]
    }
    if not imported:
        last = [ln for ln in proc.stderr.decode("utf-8", "replace").split("\n") if ln.strip()]
        raise InputError(
            f"--import-keys: no public key could be imported from {len(files)} file(s): "
            + printable(last[-1] if last else "(gpg said nothing)")
        )
    # Bring the new home's trust database up to date once, here, so that the
    # parallel verifications (which never write it) do not each ask for it.
    _gpg([*program, *OFFLINE_OPTIONS, "--homedir", os.fspath(home), "--check-trustdb"], timeout=300)
    return len(imported)


def _gpg(argv: list[str], *, timeout: float) -> subprocess.CompletedProcess[bytes]:
    """One gpg run about keys: output captured, its exit status left to the caller."""
    return run(
        argv, check=False, capture=True, stdin=subprocess.DEVNULL, env=GPG_ENV, timeout=timeout
    )


def is_armored_key(path: Path) -> bool:
    """Whether ``path`` starts like an ASCII-armored key (not a keyring gpg can open)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return b"-----BEGIN PGP " in head


@contextmanager
def temporary_home(prefix: str = "gitian-gpg-") -> Iterator[Path]:
    """A throwaway GNUPGHOME (mode 0700), removed on leaving."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)
