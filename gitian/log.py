"""Progress output a person can follow, and the debug switch.

``step("Installing packages")`` prints one line when the step ends, with its
elapsed time; nested steps are indented.  Debug mode (``GITIAN_DEBUG=1`` or
``-v`` where a command offers it) echoes every host command as ``+ argv``.
"""

from __future__ import annotations

import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # gverify loads this module at start-up: no typing import (issue 2)
    from types import TracebackType
    from typing import TextIO


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


class step:  # noqa: N801 - used like the function it was: ``with step("..."):``
    """Time one step; print ``title ... 1.2s`` (or ``failed``) when it ends."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.indent = ""
        self.start = 0.0

    def __enter__(self) -> None:
        self.start = time.monotonic()
        self.indent = "  " * state.depth
        if state.debug and not state.quiet:
            print(f"{self.indent}{self.title} ...", file=state.stream, flush=True)
        state.depth += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        state.depth -= 1
        elapsed = time.monotonic() - self.start
        if not state.quiet:
            ok = exc_type is None
            verdict = f"{elapsed:.1f}s" if ok else f"failed after {elapsed:.1f}s"
            print(f"{self.indent}{self.title} ... {verdict}", file=state.stream, flush=True)
