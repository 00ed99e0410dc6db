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

:func:`verify_each` runs one check per signature, as many at once as there
are CPUs (threads, each waiting on its own gpg started by :func:`gitian.run.spawn`),
and hands each result over as soon as it is there.  Keys (importing,
listing, expiry) are in :mod:`gitian.gpgkeys`.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Generator, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from gitian.gpgstatus import Verification, parse_status
from gitian.run import spawn

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


@contextmanager
def _memfd(name: str, data: bytes) -> Iterator[int]:
    """A readable file descriptor holding ``data`` (not a path anyone can swap)."""
    fd = os.memfd_create(name, 0)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
        yield fd
    finally:
        os.close(fd)


#: gpg's messages in English, whatever the user's locale (the report quotes them).
GPG_ENV = {"LC_ALL": "C.UTF-8"}


def verify_detached(
    signature: bytes,
    data: bytes,
    *,
    keyring: Keyring | None = None,
    program: Sequence[str] = ("gpg",),
    timeout: float = 120.0,
) -> Verification:
    """Check one detached ``signature`` over ``data`` (both in memory), offline.

    Never raises for a bad or unusable signature: that is a
    :class:`Verification` that is not :attr:`~Verification.good`.  Raises
    :class:`ToolMissingError` when the program is not installed.
    """
    (v,) = verify_many([(signature, data)], keyring=keyring, program=program, timeout=timeout)
    return v


class _Running:
    """The gpg processes one :func:`verify_each` has started, so that an
    interruption (Ctrl-C, an error, the caller stopping early) stops them all."""

    def __init__(self) -> None:
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._stopped = False

    @contextmanager
    def watching(self, proc: subprocess.Popen[bytes]) -> Iterator[None]:
        with self._lock:
            if self._stopped:  # started just as everything was being stopped
                proc.kill()
            self._procs.add(proc)
        try:
            yield
        finally:
            with self._lock:
                self._procs.discard(proc)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            for proc in self._procs:
                proc.kill()  # run.spawn reaps it in its own thread


def _check(
    signature: bytes,
    data: bytes,
    keyring: Keyring,
    program: Sequence[str],
    timeout: float,
    running: _Running,
) -> Verification:
    with _memfd("signature", signature) as sig_fd, _memfd("signed-data", data) as data_fd:
        argv = [
            *program,
            *OFFLINE_OPTIONS,
            *keyring.options(),
            # The status goes to stdout, a pipe of its own: gpg --verify of a
            # detached signature writes nothing else there, and anything else
            # would not fit the grammar (a bad signature, never a good one).
            # The human text goes to stderr.
            "--status-fd",
            "1",
            "--enable-special-filenames",
            "--verify",
            "--",
            f"-&{sig_fd}",
            f"-&{data_fd}",
        ]
        with (
            spawn(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=GPG_ENV,
                pass_fds=(sig_fd, data_fd),
                grace=0.0,
            ) as proc,
            running.watching(proc),
        ):
            try:
                status, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                return Verification(-1, problem=f"gpg did not finish within {timeout:.0f}s")
    text = err.decode("utf-8", "replace")
    lines = tuple(line.decode("utf-8", "replace") for line in status.split(b"\n") if line)
    try:
        sigs = parse_status(status)
    except ValueError as e:
        return Verification(proc.returncode, status_lines=lines, text=text, problem=str(e))
    return Verification(proc.returncode, sigs, lines, text)


#: gpg checks at once per CPU.  The thread that starts a check and reads its
#: status needs the GIL, which the caller's parsing of verified files holds
#: for milliseconds at a time; with one check per CPU the cores then sit idle.
#: Two per CPU keep them busy (a whole Monero history: 8.4 s -> 7.1-7.6 s on
#: two CPUs, bench/history.py).
PER_CPU = 2


def verify_each(
    items: Iterable[tuple[bytes, bytes]],
    *,
    keyring: Keyring | None = None,
    program: Sequence[str] = ("gpg",),
    jobs: int | None = None,
    timeout: float = 120.0,
) -> Generator[tuple[int, Verification], None, None]:
    """:func:`verify_detached` for each ``(signature, data)`` pair, ``jobs`` at
    once (default: two per CPU, see :data:`PER_CPU`); yields ``(position in items, verification)``
    as each check finishes.

    ``items`` is read only as checks can be started, so a whole history's
    worth of signatures is never in memory at once.  On every way out (an
    error, Ctrl-C, the caller closing the generator) checks not yet started
    are dropped and running ones are waited for (or killed by ``run``).
    """
    keyring = keyring or Keyring()
    jobs = max(1, jobs or PER_CPU * (os.cpu_count() or 1))
    running = _Running()
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="gpg") as pool:
        pending: dict[Future[Verification], int] = {}

        def check(sig: bytes, data: bytes) -> Verification:
            return _check(sig, data, keyring, program, timeout, running)

        def finished() -> Iterator[tuple[int, Verification]]:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                yield pending.pop(f), f.result()

        try:
            for i, (sig, data) in enumerate(items):
                if len(pending) >= 2 * jobs:
                    yield from finished()
                pending[pool.submit(check, sig, data)] = i
            while pending:
                yield from finished()
        finally:
            if pending:  # left early: drop what has not started, stop what runs
                for f in pending:
                    f.cancel()
                running.stop()


def verify_many(
    items: Sequence[tuple[bytes, bytes]],
    *,
    keyring: Keyring | None = None,
    program: Sequence[str] = ("gpg",),
    jobs: int | None = None,
    timeout: float = 120.0,
) -> list[Verification]:
    """:func:`verify_each` for a list: the verifications in the order of ``items``."""
    results: dict[int, Verification] = {}
    with closing(
        verify_each(items, keyring=keyring, program=program, jobs=jobs, timeout=timeout)
    ) as each:
        results.update(each)
    return [results[i] for i in range(len(items))]
