"""The one SSH implementation VM backends share (KVM, VirtualBox).

:class:`SshTarget` is a :class:`~gitian.targets.base.Target` whose commands
and copies go over SSH with paramiko.  A VM backend subclass supplies only the
machine: ``make_base``/``reset``/``start``/``stop`` and, optionally, the hooks
below.  Nothing here knows about qemu or VirtualBox.

Contract for subclasses
-----------------------
* The guest runs an SSH server reachable at ``ssh_host``:``ssh_port()``
  (default ``127.0.0.1``:``config.ssh_port``, i.e. ``VM_SSH_PORT``, 2223).
* ``root`` can log in with the key ``ssh_key_path()`` (default
  ``var/id_rsa``, any key type paramiko reads: RSA from classic homes,
  ed25519 from ours).  One :class:`paramiko.SSHClient` is kept per target
  object and reused for every command and copy; :meth:`close` drops it.
* Commands for other users run through ``sudo -u USER`` on the guest, so one
  root login serves every user.  Each command starts from an empty
  environment plus ``HOME``/``USER``/``LOGNAME``/``PATH``/``LANG`` and the
  caller's ``env``, in the user's home.  The remote side is a shell: the
  command line is built with :func:`shlex.join`, every word quoted.
* ``console_log()`` names a file holding the guest's console, shown (its
  tail) in every "cannot reach the target" error.  ``check_alive()`` returns
  why the machine is gone (e.g. the hypervisor process exited), or None;
  :meth:`wait_ready` calls it between attempts so a dead VM fails at once.
* ``network`` in :meth:`run` is accepted and ignored: a VM has the network
  its hypervisor gives it.
"""

from __future__ import annotations

import io
import logging
import os
import select
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

import paramiko

from gitian import log
from gitian.errors import TargetError
from gitian.log import tail
from gitian.targets.base import ENV_NAME, Command, RunResult, Target, TargetConfig

# paramiko logs every refused connection attempt with a traceback on ERROR,
# which Python's last-resort handler would print while we are merely waiting.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False

_CHUNK = 1 << 16
# Errors that mean "not reachable (yet)" rather than a bug of ours.
_NET_ERRORS: tuple[type[BaseException], ...] = (
    paramiko.SSHException,
    OSError,
    EOFError,
)


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """Every clean target is a fresh machine on a local forwarded port; its
    host key is not worth pinning and must not pollute ``known_hosts``."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        return None


def remote_command(argv: Sequence[str], *, user: str, env: Mapping[str, str]) -> str:
    """The shell command line that runs ``argv`` as ``user`` (from a root login).

    ``env`` is the complete environment (see :meth:`SshTarget.user_env`).  The
    command changes to ``$HOME`` first; ``sudo -u`` switches users.
    """
    if not argv:
        raise TargetError("no command given")
    for name in env:
        if not ENV_NAME.match(name):
            raise TargetError(f"invalid environment variable name {name!r}")
    words: list[str] = []
    if user != "root":
        words += ["sudo", "-u", user, "--"]
    words += ["env", "-i", *(f"{k}={v}" for k, v in env.items())]
    words += ["sh", "-c", 'cd "$HOME" || exit 125; unset OLDPWD; exec "$@"', "sh", *argv]
    return shlex.join(words)


@dataclass(frozen=True)
class SshConfig(TargetConfig):
    """The settings of a target reached over SSH."""

    ssh_port: int = 2223  # VM_SSH_PORT


class SshTarget(Target):
    """A target reached over SSH (see the module docstring for the contract)."""

    config_type: ClassVar[type[TargetConfig]] = SshConfig
    config: SshConfig

    ssh_host: str = "127.0.0.1"
    #: the account we log in as; other users are reached with sudo
    ssh_login: str = "root"
    #: seconds for one TCP connect / banner / authentication attempt
    connect_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client: paramiko.SSHClient | None = None

    # -- hooks for subclasses ----------------------------------------------
    def ssh_port(self) -> int:
        return self.config.ssh_port

    def ssh_key_path(self) -> Path:
        return self.config.home.var / "id_rsa"

    def console_log(self) -> Path | None:
        """File with the guest's console output, for error messages."""
        return None

    def check_alive(self) -> str | None:
        """Why the machine cannot answer any more (it is gone), or None."""
        return None

    # -- connection ----------------------------------------------------------
    def _where(self) -> str:
        return f"{self.ssh_host}:{self.ssh_port()}"

    def unreachable(self, what: str) -> TargetError:
        """A TargetError for ``what`` that names the console log and shows its tail."""
        logf = self.console_log()
        msg = what
        gone = self.check_alive()
        if gone and gone not in what:
            msg += f"; {gone}"
        hint = None
        if logf is not None:
            msg += f" (console log: {logf})"
            t = tail(logf)
            hint = "last lines of the console log:\n" + t if t else "the console log is empty"
        return TargetError(msg, hint=hint)

    def connect(self, timeout: float | None = None) -> paramiko.SSHClient:
        """The target's SSH client, connecting once (one attempt, no retries)."""
        if self._client is not None:
            transport = self._client.get_transport()
            if transport is not None and transport.is_active():
                return self._client
            self.close()
        key = self.ssh_key_path()
        if not key.is_file():
            raise TargetError(
                f"no SSH key at {key}", hint="make the base image first (make-base-vm)"
            )
        t = self.connect_timeout if timeout is None else timeout
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(_AcceptNew())
        try:
            client.connect(
                self.ssh_host,
                port=self.ssh_port(),
                username=self.ssh_login,
                key_filename=os.fspath(key),
                look_for_keys=False,
                allow_agent=False,
                timeout=t,
                banner_timeout=t,
                auth_timeout=t,
            )
        except BaseException:
            client.close()
            raise
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(15)
        self._client = client
        return client

    def close(self) -> None:
        """Drop the SSH connection (safe to call any time)."""
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Poll until ``true`` runs as root on the target, backing off 0.5→5 s.

        Raises TargetError naming the console log when the machine dies
        (``check_alive``) or does not answer within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        delay = 0.5
        last = "no answer"
        while True:
            gone = self.check_alive()
            if gone:
                raise self.unreachable(f"the target stopped while booting: {gone}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise self.unreachable(
                    f"the target did not answer on SSH at {self._where()} within "
                    f"{timeout:.0f}s ({last})"
                )
            try:
                self.connect(timeout=min(self.connect_timeout, max(left, 1.0)))
                if self.exec_command("true", stdout=subprocess.DEVNULL) == 0:
                    return
                last = "'true' failed"
            except (paramiko.SSHException, OSError, EOFError, TargetError) as e:
                # sshd restarting or the guest still bringing its network up
                last = f"{type(e).__name__}: {e}".strip().rstrip(":")
                self.close()
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, 5.0)

    # -- commands ------------------------------------------------------------
    def exec_command(
        self,
        command: str,
        *,
        stdin: bytes | IO[bytes] | None = None,
        stdout: IO[bytes] | int | None = None,
        stderr: IO[bytes] | int | None = None,
    ) -> int:
        """Run a shell command line on the target as the login user and return
        its exit status.  ``stdin`` is streamed from a thread; output is
        streamed to ``stdout``/``stderr`` (a file, a file descriptor,
        ``subprocess.DEVNULL``, or None for our own stdout/stderr).  A lost
        connection raises TargetError naming the console log."""
        try:
            client = self.connect()
        except _NET_ERRORS as e:
            self.close()
            raise self.unreachable(f"cannot reach the target at {self._where()}: {e}") from None
        transport = client.get_transport()
        if transport is None:
            raise self.unreachable(f"no SSH connection to the target at {self._where()}")
        log.debug(f"+ ssh {self.ssh_login}@{self._where()} {command}")
        try:
            chan = transport.open_session()
        except _NET_ERRORS as e:
            self.close()
            raise self.unreachable(f"lost the SSH connection to the target: {e}") from None
        feeder: threading.Thread | None = None
        failure: list[BaseException] = []
        try:
            chan.exec_command(command)
            if stdin is None:
                chan.shutdown_write()
            else:
                feeder = threading.Thread(target=_feed, args=(chan, stdin, failure), daemon=True)
                feeder.start()
            status = self._stream(chan, transport, _sink(stdout, 1), _sink(stderr, 2))
        except (OSError, EOFError, paramiko.SSHException) as e:
            if transport.is_active() and not isinstance(e, paramiko.SSHException):
                raise  # ours, not the connection's (e.g. writing the output failed)
            self.close()
            raise self.unreachable(f"lost the SSH connection to the target: {e}") from None
        finally:
            chan.close()
        if feeder is not None:
            # Usually done; if it still waits for input (a terminal on stdin
            # that the command never read) it is a daemon thread: leave it.
            feeder.join(timeout=0.2)
        if status == -1:
            gone = self.check_alive()
            if gone or not transport.is_active():
                self.close()
                raise self.unreachable(
                    f"the target went away during a command: {gone or 'connection closed'}"
                )
            status = 255  # killed by a signal, as ssh(1) reports it
        return status

    def _stream(
        self,
        chan: paramiko.Channel,
        transport: paramiko.Transport,
        out: Callable[[bytes], None],
        err: Callable[[bytes], None],
    ) -> int:
        """Pass the channel's output on until the command has ended and all of
        it was read; its exit status, or -1 when the channel closed without one."""
        while True:
            got = False
            while chan.recv_ready():
                out(chan.recv(_CHUNK))
                got = True
            while chan.recv_stderr_ready():
                err(chan.recv_stderr(_CHUNK))
                got = True
            pending = chan.recv_ready() or chan.recv_stderr_ready()
            if chan.exit_status_ready() and chan.eof_received and not pending:
                break
            if chan.closed and not pending:
                break
            if not transport.is_active():
                raise self.unreachable(f"lost the SSH connection to the target at {self._where()}")
            if not got:
                select.select([chan], [], [], 0.2)
        return chan.recv_exit_status() if chan.exit_status_ready() else -1

    def execute(self, cmd: Command) -> RunResult:
        command = remote_command(cmd.argv, user=cmd.user, env=cmd.env)
        stdout, stderr = cmd.stdout, cmd.stderr
        outbuf = io.BytesIO()
        errbuf = io.BytesIO()
        # As subprocess: PIPE collects into the result, STDOUT merges stderr.
        o: IO[bytes] | int | None = stdout
        e: IO[bytes] | int | None = stderr
        if (cmd.capture and stdout is None) or stdout == subprocess.PIPE:
            o = outbuf
        if (cmd.capture and stderr is None) or stderr == subprocess.PIPE:
            e = errbuf
        elif stderr == subprocess.STDOUT:
            e = o
        status = self.exec_command(command, stdin=cmd.stdin, stdout=o, stderr=e)
        return RunResult(status, outbuf.getvalue(), errbuf.getvalue())


# -- helpers ---------------------------------------------------------------------
def _sink(target: Any, default_fd: int) -> Callable[[bytes], None]:
    if target == subprocess.DEVNULL:
        return lambda data: None
    if target is None:
        stream = sys.stdout if default_fd == 1 else sys.stderr

        def to_std(data: bytes) -> None:
            stream.flush()
            os.write(stream.fileno(), data) if _has_fd(stream) else stream.buffer.write(data)

        return to_std
    if isinstance(target, int):
        return lambda data: _write_all(target, data)
    write: Callable[[bytes], Any] = target.write
    return lambda data: None if write(data) is None else None


def _has_fd(stream: Any) -> bool:
    try:
        stream.fileno()
    except (OSError, ValueError, AttributeError):
        return False
    return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _feed(chan: paramiko.Channel, stdin: bytes | IO[bytes], failure: list[BaseException]) -> None:
    try:
        if isinstance(stdin, (bytes, bytearray)):
            for i in range(0, len(stdin), _CHUNK):
                chan.sendall(stdin[i : i + _CHUNK])
        else:
            read = getattr(stdin, "read1", stdin.read)
            while True:
                chunk = read(_CHUNK)
                if not chunk:
                    break
                chan.sendall(chunk)
        chan.shutdown_write()
    except (OSError, ValueError, EOFError, paramiko.SSHException) as e:
        # The remote side closed early (it exited), or our end of the input
        # was closed after the command finished; the exit status tells the story.
        failure.append(e)
