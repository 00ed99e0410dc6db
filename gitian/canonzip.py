"""canon-zip DATE IN OUT: set every zip member's time to DATE 00:00:00 (SPEC §8).

The implementation lives in one place, ``target-bin/canon-zip``: a standalone
Python 3 script, because it runs inside build targets where this package is
not installed.  The host's ``canon-zip`` command loads that same file, so the
two can never drift apart.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from functools import cache
from pathlib import Path
from types import ModuleType

from gitian.errors import InputError, UsageError
from gitian.home import target_bin


def script_path() -> Path:
    """The target-side script, which is also the implementation."""
    return target_bin() / "canon-zip"


@cache
def _module() -> ModuleType:
    path = script_path()
    loader = importlib.machinery.SourceFileLoader("gitian._canon_zip_script", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def parse_date(date: str) -> tuple[int, int, int, int, int, int]:
    """``YYYY-MM-DD`` → the zip time ``(Y, M, D, 0, 0, 0)``; UsageError if it is not one."""
    mod = _module()
    try:
        result: tuple[int, int, int, int, int, int] = mod.parse_date(date)
    except mod.CanonZipError as e:
        raise UsageError(str(e)) from None
    return result


def canon_zip(date: str, src: Path, dst: Path) -> None:
    """Write ``dst``: ``src`` with every member's time set to ``date`` 00:00:00."""
    parse_date(date)
    mod = _module()
    try:
        mod.canon_zip(date, str(src), str(dst))
    except mod.CanonZipError as e:
        raise InputError(str(e)) from None
    except OSError as e:
        raise InputError(f"cannot write {dst}: {e.strerror or e}") from None
