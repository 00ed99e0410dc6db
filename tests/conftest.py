"""Shared fixtures.

Unit tests run by default.  Tests marked ``integration`` need real backends,
root and the Debian archive; `pytest -m ""` runs everything.  In CI
(``CI`` set, or ``GITIAN_STRICT_SKIPS=1``) a skip for a missing tool is a
failure, as diffoscope does it.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from testdata import COMPAT

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_until(
    condition: Callable[[], T], *, timeout: float, what: str, interval: float = 0.05
) -> T:
    """Poll ``condition`` until it returns something true and return that;
    fail naming ``what`` once ``timeout`` seconds have passed.  Tests wait on
    the state they need (a file, a process, a pid gone), never a fixed time."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def pid_gone(pid: int) -> bool:
    """``pid`` has ended (gone, or a zombie its parent has not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def strict_skips() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("GITIAN_STRICT_SKIPS"))


def require_tool(*tools: str) -> None:
    """Skip (or, in CI, fail) when a host program is missing."""
    missing = [
        t
        for t in tools
        if shutil.which(t, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None
    ]
    if missing:
        msg = f"missing host tools: {', '.join(missing)}"
        if strict_skips():
            pytest.fail(msg + " (skips are failures in CI)")
        pytest.skip(msg)


def require_root() -> None:
    if os.geteuid() != 0:
        if strict_skips():
            pytest.fail("needs root (skips are failures in CI)")
        pytest.skip("needs root")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI every skip is a failure: a test that did not run proved nothing."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if strict_skips() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped in CI (skips are failures there): {reason}"


def _remove_deep_temp_dirs(root: Path, keep: Path | None) -> None:
    """Some tests make trees deeper than Python's recursion limit (that is
    what they test); pytest's own clean-up of old temporary directories uses
    shutil.rmtree, which crashes on them and turns a green run red.  GNU rm
    has no such limit."""
    from gitian.run import remove_tree

    if not root.is_dir():
        return
    for entry in root.iterdir():
        if entry == keep or entry.is_symlink() or not entry.is_dir():
            continue
        if entry.name.startswith(("garbage-", "pytest-")) and not _in_use(entry):
            remove_tree(entry)


_SESSION_PID = ".gitian-session-pid"


def _in_use(directory: Path) -> bool:
    """Whether another pytest session still runs in ``directory`` (each
    session writes its PID there, see pytest_sessionstart)."""
    try:
        pid = int((directory / _SESSION_PID).read_text().strip() or "0")
    except (OSError, ValueError):
        return False
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pytest_sessionstart(session: pytest.Session) -> None:
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None and session.config.option.basetemp is None:
        base = Path(factory.getbasetemp())
        (base / _SESSION_PID).write_text(f"{os.getpid()}\n")
        _remove_deep_temp_dirs(base.parent, base)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None and session.config.option.basetemp is None:
        base = Path(factory.getbasetemp())
        from gitian.run import remove_tree

        if base.is_dir():
            for entry in base.iterdir():  # this run's own directories, deep ones included
                if entry.is_dir() and not entry.is_symlink():
                    remove_tree(entry)
        _remove_deep_temp_dirs(base.parent, base)


@pytest.fixture(scope="session")
def compat() -> Path:
    if not COMPAT.is_dir():
        pytest.fail(f"compat data missing at {COMPAT}")
    return COMPAT


@pytest.fixture(autouse=True)
def _stable_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Tests compare bytes; keep locale and time zone fixed.
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.delenv("LC_ALL", raising=False)
    yield
