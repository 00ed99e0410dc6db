"""Offline OpenPGP signature checks with GnuPG.

Every check runs ``gpg --verify`` with ``--status-fd`` and reads the
machine-readable status lines, never the human text (which is only passed on
for people to read).  No check ever reaches a keyserver: ``--disable-dirmngr``
keeps the network helper from starting at all, ``--no-auto-key-retrieve`` and
``--auto-key-locate local`` say the same thing in gpg's own words, and
``--no-autostart`` keeps the agent out of it.  The keys are the ones the user
names: a ``GNUPGHOME``, ``--keyring`` files, or key files imported into a
temporary home (:func:`temporary_home`).

The signed bytes are handed to gpg from memory (through memory file
descriptors), so what was verified is exactly what the caller then parses;
nothing is read twice from a file that could change in between.  (That
needs ``pass_fds``, which :func:`gitian.run.run` does not offer, so this
module starts gpg itself - argv lists only, never a shell.)

gverify loads this module at start-up, so it imports nothing heavy at the
top (no :mod:`subprocess`, :mod:`pathlib` or :mod:`typing`): the batch runs
are started with ``posix_spawn`` (:class:`_Process`), and the rarer paths
import what they need when they run (issue 2).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from gitian import log
from gitian.errors import InputError, ToolMissingError
from gitian.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from pathlib import Path

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


class Keyring(Record):
    """Where gpg finds the public keys: a home and/or explicit keyring files.

    ``home`` is ``None`` for the caller's own ``GNUPGHOME`` (or ``~/.gnupg``).
    """

    __slots__ = ("home", "keyrings")

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        keyrings: Sequence[str | os.PathLike[str]] = (),
    ) -> None:
        self.home = home
        self.keyrings = tuple(keyrings)

    def _home(self) -> str:
        if self.home is not None:
            return os.fspath(self.home)
        env = os.environ.get("GNUPGHOME")
        return env if env else os.path.join(os.path.expanduser("~"), ".gnupg")

    def effective_home(self) -> Path:
        """The home gpg will use: ours, else ``GNUPGHOME``, else ``~/.gnupg``."""
        from pathlib import Path  # noqa: PLC0415 - start-up cost (module docstring)

        return Path(self._home())

    def has_keys(self) -> bool:
        """Whether there is a keyring to look keys up in (gpg would make an empty one)."""
        if self.keyrings:
            return True
        home = self._home()
        return any(os.path.isfile(os.path.join(home, f)) for f in ("pubring.kbx", "pubring.gpg"))

    def needs_warmup(self) -> bool:
        """The first gpg run in this home would create files (trustdb): run it alone."""
        return not os.path.isfile(os.path.join(self._home(), "trustdb.gpg"))

    def options(self) -> list[str]:
        opts: list[str] = []
        if self.home is not None:
            opts += ["--homedir", os.fspath(self.home)]
        if self.keyrings:
            opts.append("--no-default-keyring")
            for k in self.keyrings:
                opts += ["--keyring", os.fspath(k)]
        return opts


class Signature(Record):
    """One signature packet's outcome, from gpg's status lines."""

    __slots__ = ("status", "keyid", "fingerprint", "primary", "errcode")

    def __init__(
        self,
        status: str,  # GOODSIG EXPSIG EXPKEYSIG REVKEYSIG BADSIG ERRSIG
        keyid: str = "",
        fingerprint: str = "",  # VALIDSIG: the key (or subkey) that made it
        primary: str = "",  # VALIDSIG: its primary key
        errcode: str = "",  # ERRSIG rc: 9 = no public key, 4 = unknown algorithm
    ) -> None:
        self.status = status
        self.keyid = keyid
        self.fingerprint = fingerprint
        self.primary = primary
        self.errcode = errcode


class Verification(Record):
    """The result of checking one detached signature."""

    __slots__ = ("returncode", "signatures", "status_lines", "text", "error")

    def __init__(
        self,
        returncode: int,
        signatures: tuple[Signature, ...] = (),
        status_lines: tuple[str, ...] = (),
        text: str = "",  # gpg's human-readable messages (stderr)
        error: str = "",  # set when gpg could not run or said something we cannot use
    ) -> None:
        self.returncode = returncode
        self.signatures = signatures
        self.status_lines = status_lines
        self.text = text
        self.error = error

    @property
    def good(self) -> bool:
        """gpg accepted it, every signature in it is valid, and at least one exists.

        A signature made by a key that has expired since is good (gpg exits 0 and
        reports EXPKEYSIG, and the classic tool calls that OK).
        """
        if self.returncode != 0 or self.error or not self.signatures:
            return False
        return all(s.status in GOOD_STATUSES and s.fingerprint for s in self.signatures)

    @property
    def fingerprints(self) -> frozenset[str]:
        """Signing-key and primary-key fingerprints of every valid signature."""
        out: set[str] = set()
        for s in self.signatures:
            if s.fingerprint:
                out.add(s.fingerprint)
            if s.primary:
                out.add(s.primary)
        return frozenset(out)

    @property
    def primaries(self) -> frozenset[str]:
        return frozenset(s.primary or s.fingerprint for s in self.signatures if s.fingerprint)

    def reason(self) -> str:
        """One line saying why a signature is not good (empty when it is)."""
        if self.good:
            return ""
        if self.error:
            return self.error
        if not self.signatures:
            return "no signature found (not an OpenPGP signature, or a truncated one)"
        for s in self.signatures:
            if s.status == "ERRSIG" and s.errcode == "9":
                return f"no public key for key {s.keyid} in the keyring"
            if s.status == "ERRSIG":
                return f"signature by key {s.keyid} could not be checked (gpg error {s.errcode})"
            if s.status == "BADSIG":
                return f"BAD signature by key {s.keyid}: the signed file was changed"
        return f"gpg failed with exit status {self.returncode}"


GOOD_STATUSES = frozenset({"GOODSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG"})
_SIG_STATUSES = GOOD_STATUSES | {"BADSIG", "ERRSIG"}


def parse_status(status: str) -> tuple[Signature, ...]:
    """Group ``[GNUPG:]`` lines into one :class:`Signature` per signature packet."""
    sigs: list[dict[str, str]] = []
    for line in status.splitlines():
        if not line.startswith("[GNUPG:] "):
            continue
        words = line[9:].split(" ")
        kw = words[0]
        if kw == "NEWSIG":
            sigs.append({})
        elif kw in _SIG_STATUSES:
            if not sigs or "status" in sigs[-1]:
                sigs.append({})
            cur = sigs[-1]
            cur["status"] = kw
            cur["keyid"] = words[1] if len(words) > 1 else ""
            if kw == "ERRSIG" and len(words) > 6:
                cur["errcode"] = words[6]
                if len(words) > 7 and len(words[7]) >= 32:
                    cur["fingerprint_hint"] = words[7]
        elif kw == "VALIDSIG" and sigs:
            cur = sigs[-1]
            cur["fingerprint"] = words[1] if len(words) > 1 else ""
            cur["primary"] = words[10] if len(words) > 10 else cur["fingerprint"]
    out: list[Signature] = []
    for s in sigs:
        if "status" not in s:
            continue
        status_kw = s["status"]
        out.append(
            Signature(
                status=status_kw,
                keyid=s.get("keyid", ""),
                # VALIDSIG is only trusted together with a good status word.
                fingerprint=s.get("fingerprint", "") if status_kw in GOOD_STATUSES else "",
                primary=s.get("primary", "") if status_kw in GOOD_STATUSES else "",
                errcode=s.get("errcode", ""),
            )
        )
    return tuple(out)


def _memfd(name: str, data: bytes) -> int:
    """A readable file descriptor holding ``data`` (not a path anyone can swap)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create(name, 0)
    else:  # pragma: no cover - non-Linux
        import tempfile  # noqa: PLC0415

        fd, path = tempfile.mkstemp(prefix=f"gverify-{name}-")
        os.unlink(path)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def verify_detached(
    signature: bytes,
    data: bytes,
    *,
    keyring: Keyring | None = None,
    program: Sequence[str] = ("gpg",),
    timeout: float = 120.0,
) -> Verification:
    """Check a detached ``signature`` over ``data`` (both in memory), offline.

    Never raises for a bad or unusable signature: that is a :class:`Verification`
    that is not :attr:`~Verification.good`.  Raises :class:`ToolMissingError`
    when the program is not installed.
    """
    keyring = keyring or Keyring()
    sig_fd = _memfd("signature", signature)
    try:
        data_fd = _memfd("signed-data", data)
    except BaseException:
        os.close(sig_fd)
        raise
    argv = [
        *program,
        *OFFLINE_OPTIONS,
        *keyring.options(),
        "--status-fd",
        "1",
        "--enable-special-filenames",
        "--verify",
        "--",
        f"-&{sig_fd}",
        f"-&{data_fd}",
    ]
    log.debug("+ " + " ".join(argv))
    import subprocess  # noqa: PLC0415 - start-up cost (module docstring)

    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            pass_fds=(sig_fd, data_fd),
            env=_env(),
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise ToolMissingError(
            f"verify program not found: {program[0]}",
            hint="install with: apt-get install gnupg",
        ) from None
    except subprocess.TimeoutExpired:
        return Verification(returncode=-1, error=f"gpg did not finish within {timeout:.0f}s")
    finally:
        os.close(sig_fd)
        os.close(data_fd)
    status = proc.stdout.decode("utf-8", "replace")
    text = proc.stderr.decode("utf-8", "replace")
    error = ""
    if "[GNUPG:] FAILURE" in status and not parse_status(status):
        error = "gpg refused the request: " + _last_line(text or status)
    return Verification(
        returncode=proc.returncode,
        signatures=parse_status(status),
        status_lines=tuple(status.splitlines()),
        text=text,
        error=error,
    )


# --------------------------------------------------------------------------
# many signatures in one gpg run
#
# Starting gpg costs more than checking one signature, so a release's signers
# are checked a batch at a time: each detached signature is turned into an
# ordinary signed message (one-pass signature packet, the signed bytes as a
# binary literal packet, the signature packet unchanged) and one
# ``gpg --verify-files`` checks them all, its FILE_START/FILE_DONE status
# lines saying which result is whose.  For a binary (class 0x00) v4
# signature this is the very same computation as the detached check.  Only a
# clean good result is taken from a batch; anything else - a signature file
# that is not exactly one such packet, a bad or unverifiable signature, a
# batch that gpg gave up on - is checked again alone with
# :func:`verify_detached`, whose verdict and text are authoritative.


def _packet(tag: int, body: bytes) -> bytes:
    """A new-format OpenPGP packet with a five-byte length."""
    return bytes([0xC0 | tag, 0xFF]) + len(body).to_bytes(4, "big") + body


def _single_signature_body(sig: bytes) -> bytes | None:
    """The body of ``sig`` if it is exactly one binary-document v4 signature packet."""
    if len(sig) < 2:
        return None
    h = sig[0]
    if not h & 0x80:
        return None
    if h & 0x40:  # new format
        tag = h & 0x3F
        o = sig[1]
        if o < 192:
            n, i = o, 2
        elif o < 224 and len(sig) > 2:
            n, i = ((o - 192) << 8) + sig[2] + 192, 3
        elif o == 255 and len(sig) >= 6:
            n, i = int.from_bytes(sig[2:6], "big"), 6
        else:
            return None  # partial lengths: not a plain signature packet
    else:  # old format
        tag = (h >> 2) & 0x0F
        lt = h & 3
        size = {0: 1, 1: 2, 2: 4}.get(lt)
        if size is None or len(sig) < 1 + size:
            return None
        n, i = int.from_bytes(sig[1 : 1 + size], "big"), 1 + size
    if tag != 2 or i + n != len(sig):
        return None
    body = sig[i:]
    # v4, signature class 0x00 (binary document), and room for the fields we read.
    if len(body) < 6 or body[0] != 4 or body[1] != 0x00:
        return None
    return body


def _issuer(body: bytes) -> bytes:
    """The issuer key id from a v4 signature's subpackets (zeros when absent)."""
    try:
        hashed_len = int.from_bytes(body[4:6], "big")
        areas = [body[6 : 6 + hashed_len]]
        ulen = int.from_bytes(body[6 + hashed_len : 8 + hashed_len], "big")
        areas.append(body[8 + hashed_len : 8 + hashed_len + ulen])
        for area in areas:
            j = 0
            while j < len(area):
                o = area[j]
                if o < 192:
                    n, j = o, j + 1
                elif o < 255:
                    n, j = ((o - 192) << 8) + area[j + 1] + 192, j + 2
                else:
                    n, j = int.from_bytes(area[j + 1 : j + 5], "big"), j + 5
                if n == 0 or j + n > len(area):
                    break
                kind = area[j] & 0x7F
                if kind == 16 and n == 9:
                    return area[j + 1 : j + 9]
                if kind == 33 and n >= 22:
                    return area[j + 2 : j + n][-8:]
                j += n
    except IndexError:
        pass
    return bytes(8)


def as_signed_message(signature: bytes, data: bytes) -> bytes | None:
    """``data`` and its detached ``signature`` as one signed message, if possible."""
    body = _single_signature_body(signature)
    if body is None:
        return None
    # One-pass signature: version 3, class, hash algorithm, public-key
    # algorithm, issuer key id, "last one".
    ops = bytes([3, body[1], body[3], body[2]]) + _issuer(body) + b"\x01"
    literal = b"b\x00" + bytes(4) + data  # binary, no file name, date 0
    return _packet(4, ops) + _packet(11, literal) + signature


class _Process:
    """A program started with ``posix_spawn``: stdin and stderr ``/dev/null``,
    stdout a pipe that :meth:`communicate` reads; ``pass_fds`` stay open in it.

    What :class:`subprocess.Popen` would do for this one case, without
    importing it (module docstring).  Signals the interpreter ignores
    (SIGPIPE, SIGXFSZ) get their default action back in the child, and
    descriptors this process inherited open are closed in it, as ``Popen``
    does (``close_fds``; Python opens its own files close-on-exec).
    """

    def __init__(self, argv: Sequence[str], env: dict[str, str], pass_fds: Sequence[int]) -> None:
        import signal  # noqa: PLC0415 - loaded already by gverify's start-up

        read_end, write_end = os.pipe()
        try:
            null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            try:
                for fd in pass_fds:
                    os.set_inheritable(fd, True)
                actions: list[tuple[int, int] | tuple[int, int, int]] = [
                    (os.POSIX_SPAWN_CLOSE, fd) for fd in _inherited_fds(pass_fds)
                ]
                actions += [
                    (os.POSIX_SPAWN_DUP2, null, 0),
                    (os.POSIX_SPAWN_DUP2, write_end, 1),
                    (os.POSIX_SPAWN_DUP2, null, 2),
                ]
                self.pid = os.posix_spawnp(
                    argv[0],
                    list(argv),
                    env,
                    file_actions=actions,
                    setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
                )
            finally:
                os.close(null)
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        self._stdout: int | None = read_end
        self.returncode: int | None = None

    def communicate(self, timeout: float) -> bytes:
        """Read stdout to its end and reap the program; :class:`TimeoutError`
        (the program killed and reaped) when that takes longer than ``timeout``."""
        import select  # noqa: PLC0415
        import time  # noqa: PLC0415

        fd = self._stdout
        assert fd is not None
        chunks: list[bytes] = []
        deadline = time.monotonic() + timeout
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.kill()
                    raise TimeoutError
                if poller.poll(left * 1000):
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        break
                    chunks.append(chunk)
        except BaseException:
            self.kill()
            raise
        self._close()
        self._wait()
        return b"".join(chunks)

    def kill(self) -> None:
        """Stop the program (if it still runs) and reap it."""
        import signal  # noqa: PLC0415

        self._close()
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:  # pragma: no cover - reaped by someone else
                pass
            self._wait()

    def _close(self) -> None:
        if self._stdout is not None:
            os.close(self._stdout)
            self._stdout = None

    def _wait(self) -> None:
        while self.returncode is None:
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:  # pragma: no cover - reaped by someone else
                self.returncode = -1
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                continue
            self.returncode = os.waitstatus_to_exitcode(status)


def _inherited_fds(keep: Sequence[int]) -> list[int]:
    """Open descriptors above 2 that a child would inherit, but ``keep``."""
    try:
        listed = [int(name) for name in os.listdir("/proc/self/fd")]
    except (OSError, ValueError):  # pragma: no cover - no /proc
        return []
    out = []
    for fd in listed:
        if fd <= 2 or fd in keep:
            continue
        try:
            if os.get_inheritable(fd):
                out.append(fd)
        except OSError:  # the descriptor listdir itself used, closed by now
            continue
    return out


class _Batch:
    """One ``gpg --verify-files`` run over signed messages, started and not yet read."""

    def __init__(
        self,
        messages: Sequence[bytes],
        keyring: Keyring,
        program: Sequence[str],
        timeout: float,
    ) -> None:
        self.count = len(messages)
        self.timeout = timeout
        fds: list[int] = []
        try:
            for m in messages:
                fds.append(_memfd("signed-message", m))
            argv = [
                *program,
                *OFFLINE_OPTIONS,
                *keyring.options(),
                "--status-fd",
                "1",
                "--logger-fd",
                "1",
                "--enable-special-filenames",
                "--verify-files",
                "--",
                *(f"-&{fd}" for fd in fds),
            ]
            log.debug("+ " + " ".join(argv))
            try:
                self.proc = _Process(argv, _env(), fds)
            except FileNotFoundError:
                raise ToolMissingError(
                    f"verify program not found: {program[0]}",
                    hint="install with: apt-get install gnupg",
                ) from None
        finally:
            for fd in fds:  # gpg has its own copies
                os.close(fd)
        self.index = {f"-&{fd}": i for i, fd in enumerate(fds)}
        self.done = False

    def kill(self) -> None:
        """Stop gpg (its results are not wanted) and reap it; once is enough."""
        if self.done:
            return
        self.done = True
        self.proc.kill()

    def finish(self) -> tuple[list[Verification | None], int]:
        """Wait for gpg.  A :class:`Verification` for each clean good message (else
        ``None``), and how many messages gpg finished before it stopped."""
        try:
            stdout = self.proc.communicate(self.timeout)
            self.done = True
        except TimeoutError:
            self.done = True
            return [None] * self.count, 0
        except BaseException:
            self.kill()
            raise
        results: list[Verification | None] = [None] * self.count
        finished = 0
        current: int | None = None
        status: list[str] = []
        text: list[str] = []
        for line in stdout.decode("utf-8", "replace").splitlines():
            if line.startswith("[GNUPG:] FILE_START "):
                parts = line.split(" ", 3)
                current = self.index.get(parts[3]) if len(parts) == 4 else None
                status, text = [], []
            elif line == "[GNUPG:] FILE_DONE":
                if current is not None:
                    finished = max(finished, current + 1)
                    joined = "\n".join(status)
                    sigs = parse_status(joined)
                    v = Verification(
                        returncode=0,
                        signatures=sigs,
                        status_lines=tuple(status),
                        text="".join(t + "\n" for t in text),
                    )
                    if len(sigs) == 1 and v.good and joined.count("[GNUPG:] NEWSIG") == 1:
                        results[current] = v
                current = None
            elif current is not None:
                (status if line.startswith("[GNUPG:] ") else text).append(line)
        return results, finished


def _batch(
    messages: Sequence[bytes], keyring: Keyring, program: Sequence[str], timeout: float
) -> tuple[list[Verification | None], int]:
    """One gpg run over ``messages`` (see :meth:`_Batch.finish`)."""
    return _Batch(messages, keyring, program, timeout).finish()


class _Chunk:
    """Some of the pairs of :func:`start_many`, their first gpg run started."""

    def __init__(
        self,
        items: Sequence[tuple[bytes, bytes]],
        keyring: Keyring,
        program: Sequence[str],
        timeout: float,
    ) -> None:
        self.items = items
        self.keyring = keyring
        self.program = program
        self.timeout = timeout
        self.pending: list[tuple[int, bytes]] = []
        for i, (sig, data) in enumerate(items):
            msg = as_signed_message(sig, data)
            if msg is not None:
                self.pending.append((i, msg))
        self.running = (
            _Batch([m for _, m in self.pending], keyring, program, timeout)
            if self.pending
            else None
        )

    def kill(self) -> None:
        if self.running is not None:
            self.running.kill()
            self.running = None

    def finish(self) -> list[Verification]:
        out: list[Verification | None] = [None] * len(self.items)
        # gpg stops a batch at the first bad signature: go on after that one.
        while self.running is not None:
            got, finished = self.running.finish()
            self.running = None
            for (i, _), v in zip(self.pending, got, strict=True):
                out[i] = v
            self.pending = self.pending[finished + 1 :]
            if self.pending:
                self.running = _Batch(
                    [m for _, m in self.pending], self.keyring, self.program, self.timeout
                )
        return [
            v
            if v is not None
            else verify_detached(sig, data, keyring=self.keyring, program=self.program)
            for v, (sig, data) in zip(out, self.items, strict=True)
        ]


def _run_batches(
    items: Sequence[tuple[bytes, bytes]],
    keyring: Keyring,
    program: Sequence[str],
    timeout: float,
) -> list[Verification]:
    return _Chunk(items, keyring, program, timeout).finish()


class PendingChecks:
    """Signature checks started by :func:`start_many`; :meth:`finish` collects them."""

    def __init__(self, head: list[Verification], chunks: list[_Chunk]) -> None:
        self._head = head
        self._chunks = chunks

    def finish(self) -> list[Verification]:
        """Wait for gpg and return one verdict per pair, in order."""
        out = list(self._head)
        try:
            for chunk in self._chunks:
                out.extend(chunk.finish())
        finally:
            self.kill()
        return out

    def kill(self) -> None:
        """Stop whatever gpg still runs (its results are not wanted)."""
        for chunk in self._chunks:
            chunk.kill()


def start_many(
    items: Sequence[tuple[bytes, bytes]],
    *,
    keyring: Keyring | None = None,
    program: Sequence[str] = ("gpg",),
    workers: int | None = None,
    timeout: float = 300.0,
) -> PendingChecks:
    """Start checking many ``(signature, data)`` pairs and return at once.

    gpg runs in the background (``workers`` runs at a time, default: one per
    CPU) while the caller goes on; :meth:`PendingChecks.finish` waits for the
    verdicts, which are those of one :func:`verify_detached` per pair.  No
    thread is involved: the caller keeps the interpreter to itself.
    """
    keyring = keyring or Keyring()
    items = list(items)
    head: list[Verification] = []
    if items and keyring.needs_warmup():
        # gpg makes its trust database on first use: let one run do that alone.
        head = _run_batches(items[:1], keyring, program, timeout)
        items = items[1:]
    n = max(1, min(workers or os.cpu_count() or 1, (len(items) + 2) // 3))
    size = max(1, -(-len(items) // n))
    chunks: list[_Chunk] = []
    try:
        for k in range(0, len(items), size):
            chunks.append(_Chunk(items[k : k + size], keyring, program, timeout))
    except BaseException:
        for c in chunks:
            c.kill()
        raise
    return PendingChecks(head, chunks)


def verify_many(
    items: Sequence[tuple[bytes, bytes]],
    *,
    keyring: Keyring | None = None,
    program: Sequence[str] = ("gpg",),
    workers: int | None = None,
    timeout: float = 300.0,
) -> list[Verification]:
    """Check many ``(signature, data)`` pairs, in parallel batches.

    The verdicts are those of one :func:`verify_detached` per pair; the work
    takes a few gpg runs (``workers``, default: one per CPU) instead of one each.
    """
    return start_many(
        items, keyring=keyring, program=program, workers=workers, timeout=timeout
    ).finish()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["LANG"] = "C.UTF-8"
    env["LC_ALL"] = "C.UTF-8"
    env.pop("LANGUAGE", None)
    return env


def _last_line(s: str) -> str:
    lines = [line for line in s.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


def key_files(directory: Path) -> list[Path]:
    """The key files in ``directory`` (sorted), armored or binary."""
    if not directory.is_dir():
        raise InputError(f"--import-keys: {directory} is not a directory")
    files = sorted(
        p for p in directory.iterdir() if p.suffix.lower() in KEY_SUFFIXES and p.is_file()
    )
    if not files:
        raise InputError(f"--import-keys: no key files ({', '.join(KEY_SUFFIXES)}) in {directory}")
    return files


class ImportResult(Record):
    __slots__ = ("imported", "fingerprints")

    def __init__(self, imported: int, fingerprints: tuple[str, ...]) -> None:
        self.imported = imported
        self.fingerprints = fingerprints


def import_keys(
    home: Path, files: Sequence[Path], *, program: Sequence[str] = ("gpg",)
) -> ImportResult:
    """Import public keys from ``files`` into ``home`` (one gpg run, offline)."""
    import subprocess  # noqa: PLC0415 - start-up cost (module docstring)

    for f in files:
        if f.stat().st_size > MAX_KEY_FILE_BYTES:
            raise InputError(f"{f}: larger than {MAX_KEY_FILE_BYTES} bytes, not a key file")
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
            argv, stdin=subprocess.DEVNULL, capture_output=True, check=False, timeout=300
        )
    except FileNotFoundError:
        raise ToolMissingError(
            f"gpg not found: {program[0]}", hint="install with: apt-get install gnupg"
        ) from None
    fingerprints: list[str] = []
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        words = line.split(" ")
        if len(words) >= 4 and words[:2] == ["[GNUPG:]", "IMPORT_OK"]:
            fingerprints.append(words[3])
    result = ImportResult(len(set(fingerprints)), tuple(fingerprints))
    if result.imported == 0:
        raise InputError(
            "--import-keys: no public key could be imported from "
            f"{len(files)} file(s): {_last_line(proc.stderr.decode('utf-8', 'replace'))}"
        )
    # Bring the new home's trust database up to date once, here, so that the
    # parallel verifications (which never write it) do not each ask for it.
    subprocess.run(
        [*program, *OFFLINE_OPTIONS, "--homedir", os.fspath(home), "--check-trustdb"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        timeout=300,
    )
    return result


def temporary_home(prefix: str = "gitian-gpg-") -> AbstractContextManager[Path]:
    """A throwaway GNUPGHOME (mode 0700), removed on leaving."""
    from contextlib import contextmanager  # noqa: PLC0415 - start-up cost (module docstring)

    @contextmanager
    def home_dir() -> Iterator[Path]:
        import shutil  # noqa: PLC0415 - only --import-keys/--keyring need these
        import tempfile  # noqa: PLC0415
        from pathlib import Path  # noqa: PLC0415

        home = Path(tempfile.mkdtemp(prefix=prefix))
        try:
            yield home
        finally:
            shutil.rmtree(home, ignore_errors=True)

    return home_dir()
