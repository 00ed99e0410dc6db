"""The text of ``var/build-script``, line for line as the classic gbuild wrote it.

Descriptors' scripts rely on these variables and on their order (``set -e``
first, ``cd build`` last), so the text is reproduced exactly: people diff
their ``var/build-script`` between the two tools.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ScriptParams:
    """Everything the build script depends on."""

    name: str  # the descriptor's (sanitary) name
    bits: int  # 32 | 64
    num_procs: int  # gbuild -j
    memory_mib: int  # gbuild -m
    reference_datetime: str  # "YYYY-MM-DD HH:MM:SS"
    script: str  # the descriptor's script body
    enable_cache: bool = False
    remote_dirs: Sequence[str] = ()  # each remote's (sanitary) dir, in descriptor order
    # what the classic script fixes; only gbuild --vary changes them
    locale: str = "en_US.UTF-8"
    umask: str = "002"


def _puts(lines: list[str], text: str = "") -> None:
    # Ruby's puts: add a newline unless the text already ends with one.
    lines.append(text if text.endswith("\n") else text + "\n")


def build_script(p: ScriptParams) -> str:
    """The complete ``var/build-script``: gbuild's lines, then the descriptor's script."""
    out = _header(p)
    _puts(out, p.script)
    return "".join(out)


def script_offset(p: ScriptParams) -> int:
    """How many lines of the build script come before the descriptor's script."""
    return "".join(_header(p)).count("\n")


def _header(p: ScriptParams) -> list[str]:
    date, _, time = p.reference_datetime.partition(" ")
    out: list[str] = []
    _puts(out, "#!/bin/bash")
    _puts(out, "set -e")
    _puts(out, f"export LANG='{p.locale}'")
    _puts(out, f"export LC_ALL='{p.locale}'")
    _puts(out, f"umask {p.umask}")
    _puts(out, "export OUTDIR=$HOME/out")
    _puts(out, f"GBUILD_BITS={p.bits}")
    if p.enable_cache:
        _puts(out, "GBUILD_CACHE_ENABLED=1")
        _puts(out, f"GBUILD_PACKAGE_CACHE=$HOME/cache/{p.name}")
        _puts(out, "GBUILD_COMMON_CACHE=$HOME/cache/common")
    _puts(out, f"MAKEOPTS=(-j{p.num_procs})")
    _puts(out, f"NUM_PROCS={p.num_procs}")
    _puts(out, f"NUM_MEM={p.memory_mib}")
    _puts(out)
    for d in p.remote_dirs:
        _puts(out, f"(cd build/{d} && git reset -q --hard && git clean -q -f -d)")
    _puts(out)
    _puts(out, f"REFERENCE_DATETIME='{p.reference_datetime}'")
    _puts(out, f"REFERENCE_DATE='{date}'")
    _puts(out, f"REFERENCE_TIME='{time}'")
    _puts(out)
    _puts(out, "cd build")
    return out
