"""Explaining how two rounds' outputs differ, with diffoscope.

diffoscope (Debian's ``diffoscope-minimal``, or ``diffoscope`` for every file
format it knows) compares the files that differ, recursively through
archives; its text, HTML and JSON reports are kept, and from the JSON one
short line per file is taken: the member and the first line that differs.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitian.run import remove_tree, run, which

INSTALL_HINT = "apt-get install diffoscope-minimal (or diffoscope, for every file format)"
#: how much of one differing line a summary shows
LINE_LIMIT = 100


@dataclass(frozen=True)
class Report:
    """diffoscope's verdict on one pair of output trees."""

    text: Path
    html: Path
    #: per file (relative path): its first difference, in one line
    summaries: dict[str, str]
    #: diffoscope's own error, when it could not compare
    error: str = ""


def available() -> bool:
    return which("diffoscope") is not None


def compare(a: Path, b: Path, files: Sequence[str], dest: Path, labels: tuple[str, str]) -> Report:
    """Compare ``files`` (relative paths present under both ``a`` and ``b``)
    and keep the reports as ``dest``.txt/.html/.json.  The files are linked
    into ``dest``/<label>/ first, so diffoscope sees only what differs and
    its report names the rounds."""
    stage = dest.with_name(dest.name + ".files")
    remove_tree(stage)
    sides = [stage / labels[0], stage / labels[1]]
    for src, side in zip((a, b), sides, strict=True):
        for rel in files:
            _link(src / rel, side / rel)
    text, html, js = (dest.with_suffix(s) for s in (".txt", ".html", ".json"))
    for p in (text, html, js):
        p.unlink(missing_ok=True)
    res = run(
        ["diffoscope", "--no-progress", "--exclude-directory-metadata=yes",
         "--text", text, "--html", html, "--json", js, *sides],
        check=False, capture=True,
    )  # fmt: skip
    if res.returncode not in (0, 1) or not js.exists():
        err = (res.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        return Report(text, html, {}, error=err[-1] if err else f"exit status {res.returncode}")
    data = json.loads(js.read_text(encoding="utf-8", errors="replace"))
    summaries: dict[str, str] = {}
    top = os.fspath(sides[0]) + "/"
    wanted = set(files)
    dirs = {str(p) for f in files for p in Path(f).parents if str(p) != "."}
    pending = list(data.get("details") or [])
    while pending:  # diffoscope nests a directory's files in its detail
        detail = pending.pop(0)
        name = str(detail.get("source1", ""))
        rel = name[len(top) :] if name.startswith(top) else name
        if rel in wanted:
            summaries[rel] = first_difference(detail)
        elif rel in dirs:
            pending += detail.get("details") or []
    return Report(text, html, summaries)


def first_difference(detail: dict[str, Any], path: tuple[str, ...] = ()) -> str:
    """The first difference in a diffoscope JSON detail: the member it is in
    (when inside an archive) and its first removed and added lines."""
    diff = detail.get("unified_diff")
    if diff:
        where = f"in {' / '.join(path)}: " if path else ""
        return where + _first_lines(str(diff))
    for sub in detail.get("details") or []:
        found = first_difference(sub, (*path, str(sub.get("source1", "?"))))
        if found:
            return found
    comments = detail.get("comments") or []
    if comments:
        where = f"in {' / '.join(path)}: " if path else ""
        return where + str(comments[0])
    return ""


def _first_lines(diff: str) -> str:
    line_no = ""
    minus = plus = None
    for line in diff.splitlines():
        if line.startswith("@@") and not line_no:
            line_no = line.split()[1].lstrip("-").split(",")[0] if len(line.split()) > 1 else ""
        elif line.startswith("-") and minus is None:
            minus = line[1:]
        elif line.startswith("+") and plus is None:
            plus = line[1:]
        if minus is not None and plus is not None:
            break
    at = f"line {line_no}: " if line_no else ""
    return f"{at}{_cut(minus)} -> {_cut(plus)}"


def _cut(line: str | None) -> str:
    if line is None:
        return "(nothing)"
    return repr(line if len(line) <= LINE_LIMIT else line[: LINE_LIMIT - 3] + "...")


def _link(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)
