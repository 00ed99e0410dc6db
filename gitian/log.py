"""Progress output a person can follow, and the debug switch.

``step("Installing packages")`` prints one line when the step ends, with its
elapsed time; nested steps are indented.  Debug mode (``GITIAN_DEBUG=1`` or
``-v`` where a command offers it) echoes every host command as ``+ argv``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TextIO


class _State:
    debug = False
    quiet = False
    depth = 0
    stream: TextIO = sys.stderr


state = _State()


def set_debug(on: bool) -> None:
    state.debug = on


def set_quiet(on: bool) -> None:
    state.quiet = on


def debug(msg: str) -> None:
    if state.debug:
        print(msg, file=state.stream, flush=True)


def info(msg: str) -> None:
    if not state.quiet:
        print("  " * state.depth + msg, file=state.stream, flush=True)


def warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr, flush=True)


@contextmanager
def step(title: str) -> Iterator[None]:
    """Time one step; print ``title ... 1.2s`` (or ``failed``) when it ends."""
    start = time.monotonic()
    indent = "  " * state.depth
    if state.debug and not state.quiet:
        print(f"{indent}{title} ...", file=state.stream, flush=True)
    state.depth += 1
    ok = False
    try:
        yield
        ok = True
    finally:
        state.depth -= 1
        elapsed = time.monotonic() - start
        if not state.quiet:
            verdict = f"{elapsed:.1f}s" if ok else f"failed after {elapsed:.1f}s"
            print(f"{indent}{title} ... {verdict}", file=state.stream, flush=True)


def tee(rfd: int, logf: IO[bytes]) -> None:
    """Copy what comes on ``rfd`` to ``logf`` and to our stdout, as it comes
    (gbuild's build log under CI); a closed stdout only stops the second."""
    with os.fdopen(rfd, "rb", buffering=0) as r:
        while True:
            chunk = r.read(65536)
            if not chunk:
                break
            logf.write(chunk)
            logf.flush()
            try:
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
            except (OSError, ValueError):
                pass


def tail(path: Path | None, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file (``\\r`` dropped, bad UTF-8
    replaced), or '' when there is none or it cannot be read."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace").replace("\r", "")
    return "\n".join(text.rstrip().splitlines()[-lines:])
