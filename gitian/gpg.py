"""Offline OpenPGP signature checks with GnuPG.

One signature file, one ``gpg --verify SIG DATA``, as careful OpenPGP callers
run it (GPGME, Qubes' split-gpg, the fixes after "Johnny, you are fired"):

* The signature and the signed bytes come from memory (memory file
  descriptors handed over with ``pass_fds``), so what gpg checked is exactly
  what the caller then parses; nothing is read twice from a file that could
  change in between.
* gpg's machine-readable status goes to a pipe of its own (``--status-fd``)
  and is read by :mod:`gitian.gpgstatus`; its human text (stderr), which
  quotes the signature and the key (user IDs, the Signer's User ID,
  notations, policy URLs, revocation reasons), goes to another and never
  decides anything.
* gpg's exit status counts: anything but 0 is never good.
* Nothing reaches a keyserver: ``--disable-dirmngr`` keeps the network
  helper from starting at all, ``--no-auto-key-retrieve`` and
  ``--auto-key-locate local`` say the same in gpg's own words, and
  ``--no-autostart`` keeps the agent out of it.

:func:`verify_many` runs one check per signature, as many at once as there
are CPUs, and stops (kills and reaps) whatever still runs on every way out:
an error, Ctrl-C, a timeout.  gpg needs ``pass_fds``, which
:func:`gitian.run.run` does not offer yet, so this module starts it itself -
argv lists only, never a shell.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gitian import log
from gitian.errors import InputError, ToolMissingError
from gitian.gpgstatus import Verification, parse_status
from gitian.run import signals_held
from gitian.text import printable

#: gpg options that keep every verification offline and side-effect free.
OFFLINE_OPTIONS: tuple[str, ...] = (
    "--batch",
    "--no-tty",
    "--no-autostart",
    "--disable-dirmngr",
    "--no-auto-key-retrieve",
    "--auto-key-locate",
    "local",
    "--keyserver-options",
    "no-auto-key-retrieve",
    "--no-auto-check-trustdb",
    "--no-permission-warning",
)

#: Files a key directory may hold (anything else there is ignored).
KEY_SUFFIXES = (".asc", ".gpg", ".pgp", ".key", ".pub")
MAX_KEY_FILE_BYTES = 16 * 1024 * 1024
#: More than this on either of gpg's outputs for one signature is not gpg verifying.
MAX_OUTPUT_BYTES = 4 * 1024 * 1024

_INSTALL_HINT = "install with: apt-get install gnupg"


@dataclass(frozen=True, slots=True)
class Keyring:
    """Where gpg finds the public keys: a home and/or explicit keyring files.

    ``home`` is ``None`` for the caller's own ``GNUPGHOME`` (or ``~/.gnupg``).
    """

    home: Path | None = None
    keyrings: tuple[Path, ...] = ()

    def effective_home(self) -> Path:
        """The home gpg will use: ours, else ``GNUPGHOME``, else ``~/.gnupg``."""
        if self.home is not None:
            return self.home
        env = os.environ.get("GNUPGHOME")
        return Path(env) if env else Path.home() / ".gnupg"

    def has_keys(self) -> bool:
        """Whether there is a keyring to look keys up in (gpg would make an empty one)."""
        if self.keyrings:
            return True
        home = self.effective_home()
        return any((home / f).is_file() for f in ("pubring.kbx", "pubring.gpg"))

    def options(self) -> list[str]:
        opts: list[str] = []
        if self.home is not None:
            opts += ["--homedir", os.fspath(self.home)]
        if self.keyrings:
            opts.append("--no-default-keyring")
            for k in self.keyrings:
                opts += ["--keyring", os.fspath(k)]
        return opts


# --------------------------------------------------------------------------
# running gpg


def _memfd(name: str, data: bytes) -> int:
    """A readable file descriptor holding ``data`` (not a path anyone can swap)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create(name, 0)
    else:  # pragma: no cover - non-Linux
        fd, path = tempfile.mkstemp(prefix=f"gverify-{name}-")
        os.unlink(path)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _env() -> dict[str, str]:
    """gpg's messages in English, whatever the user's locale (the report quotes them)."""
    env = dict(os.environ)
    env["LANG"] = env["LC_ALL"] = "C.UTF-8"
    env.pop("LANGUAGE", None)
    return env


@dataclass(eq=False)
class _Check:
    """One running ``gpg --verify``: its process and what its two pipes said."""

    proc: subprocess.Popen[bytes]
    status_fd: int  # our end of the --status-fd pipe
    stderr_fd: int
    deadline: float
    out: dict[int, list[bytes]] = field(default_factory=dict)
    problem: str = ""
    closed: bool = False  # our end of the status pipe

    @classmethod
    def start(
        cls,
        signature: bytes,
        data: bytes,
        keyring: Keyring,
        program: Sequence[str],
        timeout: float,
    ) -> _Check:
        fds: list[int] = []
        try:
            fds.append(_memfd("signature", signature))
            fds.append(_memfd("signed-data", data))
            status_read, status_write = os.pipe()
            fds.append(status_write)
            argv = [
                *program,
                *OFFLINE_OPTIONS,
                *keyring.options(),
                "--status-fd",
                str(status_write),
                "--enable-special-filenames",
                "--verify",
                "--",
                f"-&{fds[0]}",
                f"-&{fds[1]}",
            ]
            log.debug("+ " + " ".join(argv))
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    pass_fds=fds,
                    env=_env(),
                )
            except BaseException as e:
                os.close(status_read)
                if isinstance(e, FileNotFoundError):
                    raise ToolMissingError(
                        f"verify program not found: {program[0]}", hint=_INSTALL_HINT
                    ) from None
                raise
        finally:
            for fd in fds:  # gpg has its own copies
                os.close(fd)
        assert proc.stderr is not None
        stderr_fd = proc.stderr.fileno()
        check = cls(proc, status_read, stderr_fd, time.monotonic() + timeout)
        check.out = {status_read: [], stderr_fd: []}
        return check

    def read(self, fd: int) -> bool:
        """Read what is there on ``fd``; False once it is at its end (or too much came)."""
        chunk = os.read(fd, 1 << 16)
        self.out[fd].append(chunk)
        if sum(map(len, self.out[fd])) > MAX_OUTPUT_BYTES:
            self.problem = f"gpg wrote more than {MAX_OUTPUT_BYTES} bytes; stopped"
            return False
        return bool(chunk)

    def stop(self, *, finished: bool = False) -> None:
        """Reap gpg - killing it first unless it ``finished`` (closed its pipes)
        and exits before its deadline - and close our ends of its pipes.
        Safe to call again (after an interruption, say)."""
        if finished and self.proc.returncode is None:
            try:
                self.proc.wait(timeout=max(0.0, self.deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.problem = "gpg closed its output but did not exit"
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if not self.closed:
            self.closed = True
            os.close(self.status_fd)
        assert self.proc.stderr is not None
        self.proc.stderr.close()

    def result(self) -> Verification:
        status = b"".join(self.out[self.status_fd])
        text = b"".join(self.out[self.stderr_fd]).decode("utf-8", "replace")
        lines = tuple(line.decode("utf-8", "replace") for line in status.split(b"\n") if line)
        rc = self.proc.returncode if self.proc.returncode is not None else -1
        if self.problem:
            return Verification(rc, status_lines=lines, text=text, problem=self.problem)
        try:
            sigs = parse_status(status)
        except ValueError as e:
            return Verification(rc, status_lines=lines, text=text, problem=str(e))
        return Verification(rc, sigs, lines, text)


def verify_many(
    items: Sequence[tuple[bytes, bytes]],
    *,
    keyring: Keyring | None = None,
    program: Sequence[str] = ("gpg",),
    jobs: int | None = None,
    timeout: float = 120.0,
) -> list[Verification]:
    """Check each ``(signature, data)`` pair with its own ``gpg --verify``.

    ``jobs`` checks run at once (default: one per CPU).  Never raises for a
    bad or unusable signature: that is a :class:`Verification` that is not
    :attr:`~Verification.good`.  Raises :class:`ToolMissingError` when the
    program is not installed.  Whatever is still running when this returns
    or raises (Ctrl-C included) is killed and reaped.
    """
    keyring = keyring or Keyring()
    jobs = max(1, jobs or os.cpu_count() or 1)
    results: list[Verification | None] = [None] * len(items)
    waiting = list(range(len(items)))[::-1]
    running: dict[int, tuple[int, _Check]] = {}  # fd -> (item index, check)
    open_fds: dict[int, int] = {}  # item index -> pipes still open
    checks: dict[int, _Check] = {}
    with selectors.DefaultSelector() as sel:
        try:
            while waiting or checks:
                while waiting and len(checks) < jobs:
                    i = waiting.pop()
                    sig, data = items[i]
                    # A signal (Ctrl-C) while gpg is being started is held until
                    # it is known here, so that the clean-up below stops it too.
                    with signals_held():
                        c = _Check.start(sig, data, keyring, program, timeout)
                        checks[i] = c
                        open_fds[i] = len(c.out)
                        for fd in c.out:
                            sel.register(fd, selectors.EVENT_READ)
                            running[fd] = (i, c)
                now = time.monotonic()
                wait = max(0.0, min(c.deadline for c in checks.values()) - now)
                for key, _ in sel.select(wait):
                    fd = int(key.fd)
                    i, c = running[fd]
                    if not c.read(fd):
                        sel.unregister(fd)
                        del running[fd]
                        open_fds[i] -= 1
                        if c.problem:
                            _drop(sel, running, c)
                            open_fds[i] = 0
                now = time.monotonic()
                for i in [i for i, c in checks.items() if open_fds[i] == 0 or c.deadline <= now]:
                    c = checks[i]
                    finished = open_fds[i] == 0 and not c.problem
                    if open_fds[i]:
                        c.problem = f"gpg did not finish within {timeout:.0f}s"
                        _drop(sel, running, c)
                    c.stop(finished=finished)
                    results[i] = c.result()
                    del checks[i]
        finally:
            with signals_held():
                for c in checks.values():
                    c.stop()
    return [r for r in results if r is not None]


def _drop(sel: selectors.BaseSelector, running: dict[int, tuple[int, _Check]], c: _Check) -> None:
    """Stop watching ``c``'s pipes (it is about to be stopped)."""
    for fd in [fd for fd, (_, other) in running.items() if other is c]:
        sel.unregister(fd)
        del running[fd]


def verify_detached(
    signature: bytes,
    data: bytes,
    *,
    keyring: Keyring | None = None,
    program: Sequence[str] = ("gpg",),
    timeout: float = 120.0,
) -> Verification:
    """Check one detached ``signature`` over ``data`` (both in memory), offline."""
    (v,) = verify_many([(signature, data)], keyring=keyring, program=program, timeout=timeout)
    return v


# --------------------------------------------------------------------------
# keys


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
    log.debug("+ " + " ".join(argv))
    try:
        proc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, env=_env(), timeout=120
        )
    except FileNotFoundError:
        raise ToolMissingError(f"gpg not found: {program[0]}", hint=_INSTALL_HINT) from None
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


def import_keys(home: Path, files: Sequence[Path], *, program: Sequence[str] = ("gpg",)) -> int:
    """Import public keys from ``files`` into ``home`` (one gpg run, offline);
    how many distinct keys were imported."""
    for f in files:
        if f.stat().st_size > MAX_KEY_FILE_BYTES:
            raise InputError(
                f"{printable(str(f))}: larger than {MAX_KEY_FILE_BYTES} bytes, not a key file"
            )
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
    try:
        proc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, env=_env(), timeout=300
        )
    except FileNotFoundError:
        raise ToolMissingError(f"gpg not found: {program[0]}", hint=_INSTALL_HINT) from None
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
    subprocess.run(
        [*program, *OFFLINE_OPTIONS, "--homedir", os.fspath(home), "--check-trustdb"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=_env(),
        timeout=300,
    )
    return len(imported)


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
    import shutil

    home = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)
