"""Which line of the script a failed build stopped at, from real ``bash -x`` logs."""

from __future__ import annotations

import subprocess

import pytest

from gitian.buildscript import ScriptParams, build_script, script_offset
from gitian.scriptline import Found, locate, script_start


def failing(script: str) -> Found | None:
    """Run ``script`` as gbuild does (bash -x, script on stdin, output merged)."""
    p = subprocess.run(
        ["bash", "-x"], input=script.encode(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, check=False,
    )  # fmt: skip
    assert p.returncode != 0, p.stdout.decode()
    return locate(p.stdout.decode().splitlines(), script)


@pytest.mark.parametrize(
    ("script", "line"),
    [
        ("set -e\nX=1\necho a\nfalse\necho b\n", 4),
        # a function's body, called after its definition
        ("set -e\nf() {\n  echo in f\n  ls /nonexistent\n}\necho start\nf\n", 4),
        ("set -e\nfor i in a b; do\n  echo $i\ndone\nexit 3\n", 5),
        # bash names the line itself: command not found, unset variable, cd
        ("set -e\nno-such-command-here --build .\n", 2),
        ("set -eu\necho start\necho $UNSET_VAR\n", 3),
        ("set -e\ncd /nonexistent-dir\n", 2),
        # a command continued over lines is named by its first line
        ("set -e\n./no-such-configure \\\n  --prefix=/usr \\\n  --enable-x\n", 2),
        ("set -e\nfalse_in_heredoc=1\ncat <<EOF\nfalse\nEOF\nfalse\n", 6),
        ("set -e\nX=$(false)\n", 2),
        # the same command twice: the one that ran last
        ("set -e\ntest -e /\necho b\ntest -e /\ntest -e /nope\n", 5),
        ("set -e\nfor i in 1 2; do\n  test $i = 1\ndone\n", 3),
        ('set -e\nif [ -d / ]; then\n  grep -q "no such text" /dev/null\nfi\n', 3),
        ('set -e\nmake_opts="-j2 -k"\ntrue $make_opts && test -z "$make_opts"\n', 3),
        ("set -e\ntrue 2>/dev/null; test -e /x > /dev/null\n", 2),
    ],
)
def test_failing_line_found(script: str, line: int) -> None:
    found = failing(script)
    assert found is not None
    assert (found.line, found.text) == (line, script.splitlines()[line - 1])


def test_no_trace_or_no_match_says_nothing() -> None:
    assert locate([], "false\n") is None
    assert locate(["compiling", "error"], "make\n") is None
    # the last traced command is not one of the script's (a sourced file)
    assert locate(["+ make", "+ something-else"], "make\n") is None


def test_header_lines_are_counted_for_the_descriptor() -> None:
    p = ScriptParams(name="p", bits=64, num_procs=2, memory_mib=2000,
                     reference_datetime="2020-01-01 00:00:00", script="echo a\nfalse\n",
                     enable_cache=True, remote_dirs=["src"])  # fmt: skip
    text = build_script(p)
    assert text.splitlines()[script_offset(p) :] == ["echo a", "false"]


def test_script_start_in_the_descriptor_file() -> None:
    raw = b"name: x\n# comment\nscript: |\n  echo a\n  false\nfiles: []\n"
    assert script_start(raw) == 4
    assert script_start(b"name: x\nscript: 'echo a'\n") is None  # not a literal block
    assert script_start(b"- a list\n") is None
