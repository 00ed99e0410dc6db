"""Which line of the build script a failed build stopped at.

gbuild runs ``var/build-script`` with ``bash -x``, so ``var/build.log`` holds
a ``+ command`` line for every simple command the script ran, after
expansion and with bash's own quoting.  Two things point back at the script:

* bash's own errors name the line (``bash: line 14: cmake: command not
  found``; also unset variables, failing ``cd``, syntax errors): exact;
* otherwise the trace is walked against the script: each traced command is
  matched with the script's simple commands (variables, command
  substitutions and globs match anything, quoting and redirections are
  ignored), in the order the script runs them, and the line of the last
  traced command is the answer.

Nothing is changed in how the script runs or in what the log holds: the
same script with a different ``PS4`` could print its line numbers itself,
but trace lines also land in files a script writes (``{ ...; } 2>log``),
and those are outputs that must stay as the classic tool made them.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gitian.buildscript import ScriptParams, build_script, script_offset
from gitian.descriptor import Descriptor

#: PyYAML's C loader when it has one (the descriptor was checked by safeyaml before)
_LOADER: Any = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader
#: bash's own error about a line of the script it reads on stdin
BASH_ERROR = re.compile(r"bash: line (\d+): ")
_TRACE = re.compile(r"(\++) (.*)")
# Shell expansions in a word: each may become any text, or several words.
_EXPANSION = re.compile(
    r"\$\{[^}]*\}|\$\([^)]*\)|\$[A-Za-z_][A-Za-z0-9_]*|\$[0-9@*#?$!-]|`[^`]*`|[*?]|\[[^\]]*\]|~"
)
_SUBSTITUTION = re.compile(r"\$\((?:[^()]|\((?:[^()]|\([^()]*\))*\))*\)|`[^`]*`")
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")
_KEYWORDS = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{", "}"}
_REDIRECT = re.compile(r"[0-9]*(<<-?|<<<|<>|<&|>&|&>>|&>|>>|>\||<|>)")


@dataclass(frozen=True)
class _Command:
    line: int  # where it starts in the script
    name: str | None  # its first word, None when that is an expansion
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class Found:
    """A line of the script (1-based) and its text."""

    line: int
    text: str


def locate(log_lines: Iterable[str], script: str) -> Found | None:
    """The line of ``script`` (the whole build script) that was running when
    the log ``log_lines`` (its ``bash -x`` output) ended, or None if that
    cannot be told."""
    lines = script.splitlines()
    last_trace: str | None = None
    bash_error: int | None = None
    traced: list[str] = []
    for raw in log_lines:
        m = _TRACE.fullmatch(raw.rstrip("\n"))
        if m and len(m.group(1)) == 1:
            last_trace = m.group(2)
            traced.append(last_trace)
            bash_error = None
            continue
        e = BASH_ERROR.match(raw)
        if e and last_trace is not None:
            bash_error = int(e.group(1))
    if bash_error is not None and 1 <= bash_error <= len(lines):
        n = bash_error
        while n > 1 and lines[n - 2].endswith("\\"):
            n -= 1  # bash names a later line of a command continued with \
        return Found(n, lines[n - 1])
    if not traced:
        return None
    found = _walk(traced, list(_commands(lines)))
    if found is None:
        return None
    return Found(found, lines[found - 1])


def _walk(traced: list[str], commands: list[_Command]) -> int | None:
    """Follow the traced commands through the script's; the line of the last."""
    by_name: dict[str, list[int]] = {}
    anywhere: list[int] = []  # commands whose name is an expansion ($CC ...)
    for i, c in enumerate(commands):
        (by_name.setdefault(c.name, []) if c.name else anywhere).append(i)
    cursor = 0  # index into commands of the last match
    line: int | None = None
    for text in traced:
        words = _split(text)
        joined = "".join(" " + w for w in words)
        candidates = sorted(by_name.get(words[0] if words else "", []) + anywhere)
        hits = [i for i in candidates if commands[i].pattern.fullmatch(joined)]
        if not hits:
            line = None
            continue
        # The next match in script order, else (a loop, a function) the first.
        after = [i for i in hits if i >= cursor]
        cursor = after[0] if after else hits[0]
        line = commands[cursor].line
    return line


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:  # bash's $'...' quoting, or a command spanning lines
        return text.split()


def _commands(lines: list[str]) -> Iterator[_Command]:
    """(line number, pattern) of every simple command in the script."""
    heredoc: str | None = None
    start = 0
    logical = ""
    for n, line in enumerate(lines, 1):
        if heredoc is not None:
            if line.strip() == heredoc:
                heredoc = None
            continue
        if not logical:
            start = n
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        m = _HEREDOC.search(logical)
        heredoc = m.group(2) if m else None
        for words in _simple_commands(logical):
            pattern = _pattern(words)
            if pattern is not None:
                name = None if _EXPANSION.search(words[0]) else words[0]
                yield _Command(start, name, pattern)
        logical = ""


def _simple_commands(line: str) -> Iterator[list[str]]:
    # A command substitution is one expansion, not commands of this line.
    line = _SUBSTITUTION.sub("${_}", line)
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    try:
        tokens = list(lex)
    except ValueError:  # an unclosed quote: a string that goes on on the next line
        return
    words: list[str] = []
    skip_next = False
    for tok in tokens:
        if skip_next:
            skip_next = False
            continue
        if _REDIRECT.fullmatch(tok):
            if words and words[-1].isdigit():
                words.pop()  # the 2 of 2>/dev/null
            skip_next = True
            continue
        if tok == "()" and len(words) == 1:
            words = []  # a function definition: its name is traced where it is called
            continue
        if tok and all(c in "();&|" for c in tok):
            if words and words[0] != "function":
                yield words
            words = []
            continue
        if not words and tok in _KEYWORDS:
            continue
        words.append(tok)
    if words and words[0] != "function":
        yield words


def _pattern(words: list[str]) -> re.Pattern[str] | None:
    """A regex for the traced form of a simple command (each word after a
    space); None for a command with no literal word (it would match anything)."""
    parts: list[str] = []
    literal = False
    for w in words:
        pieces = _EXPANSION.split(w)
        if "".join(pieces):
            literal = True
            parts.append(" " + ".*?".join(re.escape(p) for p in pieces))
        else:  # only expansions: nothing, one word, or several after splitting
            parts.append("(?: .*?)?")
    return re.compile("".join(parts), re.S) if literal else None


def describe(build_log: Path, params: ScriptParams, desc: Descriptor) -> str:
    """Where in the descriptor's script a failed build stopped, as a clause
    for the error (``, at line 3 of the descriptor's script (x.yml:41): make``),
    or '' when the log does not tell."""
    try:
        with open(build_log, encoding="utf-8", errors="replace") as f:
            found = locate(f, build_script(params))
    except OSError:
        return ""
    offset = script_offset(params)
    if found is None or found.line <= offset:
        return ""  # gbuild's own lines, or nothing known
    n = found.line - offset
    start = script_start(desc.raw)
    at = f" ({desc.path.name}:{start + n - 1})" if start is not None else ""
    text = found.text.strip()
    text = text if len(text) <= 200 else text[:197] + "..."
    return f", at line {n} of the descriptor's script{at}: {text}"


def script_start(raw: bytes) -> int | None:
    """The line of the descriptor file holding the first line of its script,
    when the script is a literal block (``script: |``), else None."""
    try:
        root = yaml.compose(raw.decode("utf-8"), Loader=_LOADER)
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    if not isinstance(root, yaml.MappingNode):
        return None
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "script":
            if isinstance(value, yaml.ScalarNode) and value.style == "|":
                return int(value.start_mark.line) + 2  # the line after the "|", 1-based
    return None
