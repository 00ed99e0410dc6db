"""Shared fixtures.

Unit tests run by default.  Tests marked ``integration`` need real backends,
root and the Debian archive; `pytest -m ""` runs everything.  In CI
(``CI`` set, or ``GITIAN_STRICT_SKIPS=1``) a skip for a missing tool is a
failure, as diffoscope does it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
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


def git_in(
    repo: Path, *args: str, date: str = "2024-01-01T00:00:00+0000", check: bool = True
) -> str:
    """``git ARGS`` in ``repo`` (its output, stripped) with a fixed author,
    committer and date and no user or system configuration, so that the
    repositories tests make have the same commit ids on every machine."""
    env = {
        **os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@example.invalid", "GIT_AUTHOR_DATE": date,
        "GIT_COMMITTER_NAME": "C", "GIT_COMMITTER_EMAIL": "c@example.invalid",
        "GIT_COMMITTER_DATE": date,
    }  # fmt: skip
    config = ("commit.gpgSign=false", "tag.gpgSign=false", "init.defaultBranch=main")
    return subprocess.run(
        ["git", *(a for c in config for a in ("-c", c)), *args],
        cwd=repo, env=env, check=check, capture_output=True,
    ).stdout.decode().strip()  # fmt: skip


def make_upstream(repo: Path) -> Path:
    """A git repository at ``repo``: file ``f`` "one" in a commit tagged
    ``v1.0`` (annotated, 2021-02-03 04:05:06 +0200), then "two" in the next
    commit on ``main`` (2022-12-31 23:30 -0100), which branch ``side`` also
    points to."""
    repo.mkdir()
    git_in(repo, "init", "-q")
    (repo / "f").write_text("one\n")
    git_in(repo, "add", "f")
    git_in(repo, "commit", "-qm", "one", date="2021-02-03T04:05:06+0200")
    git_in(repo, "tag", "-a", "-m", "v1", "v1.0", date="2021-02-03T04:05:06+0200")
    (repo / "f").write_text("two\n")
    git_in(repo, "commit", "-qam", "two", date="2022-12-31T23:30:00-0100")
    git_in(repo, "branch", "side")
    return repo


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
