"""Timing child processes for the bench scripts: wall time, and CPU time of
the children (user+sys)."""

from __future__ import annotations

import resource
import subprocess
import time
from collections.abc import Sequence


def timed(commands: Sequence[Sequence[str]], env: dict[str, str]) -> tuple[float, float, list[int]]:
    """Run ``commands`` in turn (output discarded): wall time, CPU time of the
    children (user+sys) and each exit status."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    codes = [
        subprocess.run(
            list(argv),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        ).returncode
        for argv in commands
    ]
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, codes
