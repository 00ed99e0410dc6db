"""A signal that lands just as a host command starts (issue 6, item 3).

``gitian.run.run`` kills and waits for its child when Ctrl-C or SIGTERM
arrives while it waits.  The window before that - the instant after the
child was started - must be covered too: otherwise the child (say the
``mount`` of a target's overlay) finishes after gbuild's clean-up has looked
and found nothing to undo, and a mount is left behind.  The integration test
``test_gbuild_faults.py::test_signal_at_each_phase[Starting target-SIGINT]``
hit exactly that, about one run in ten; this test hits it every time by
delivering the signal as ``Popen`` returns.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gitian import run as run_mod
from tests.conftest import pid_gone


def test_signal_right_after_the_child_starts_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    witness = tmp_path / "witness"
    real_popen = subprocess.Popen
    started: list[int] = []

    class PopenThenSignal(real_popen):  # type: ignore[misc,valid-type]
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            started.append(self.pid)
            signal.raise_signal(signal.SIGINT)  # Ctrl-C as Popen returns

    monkeypatch.setattr(subprocess, "Popen", PopenThenSignal)
    with pytest.raises(KeyboardInterrupt):
        run_mod.run(["sh", "-c", f"sleep 0.5; touch {witness}"])
    monkeypatch.undo()
    # Stopped and reaped before the interrupt got out of run(): no need to wait.
    assert started and pid_gone(started[0]), "the command went on running after Ctrl-C"
    assert not witness.exists()
