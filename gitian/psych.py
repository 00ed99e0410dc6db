"""A small YAML emitter that writes what Ruby's ``to_yaml`` writes.

The classic tools dumped result files and asserts with Psych 4.0 on libyaml
0.2.5, and signatures cover those exact bytes.  This module reproduces that
output for the kinds of value the files hold: strings, ``None``, booleans,
numbers, dates, lists, mappings and ordered maps (:class:`Omap`, written as
``!!omap``).  It is written from the documented behaviour of the two layers:

* Psych picks a *requested* style per string: literal (``|``) when a line
  break is followed by more text, double-quoted for ``y``/``n`` and for text
  with a line starting with a non-word character and no ``"``, single-quoted
  when the text would read back as something other than a string
  (``'22.0'``, ``'true'``, ``''``), plain otherwise.
* libyaml analyses the characters and downgrades a style it cannot use
  (plain → single-quoted → double-quoted; literal → double-quoted), folds
  quoted and plain scalars at spaces past column 80, indents by 2, and writes
  block sequences inside mappings without extra indentation.

Nothing here reads YAML; :func:`gitian.safeyaml.safe_yaml` does that.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

BEST_INDENT = 2
BEST_WIDTH = 80
OMAP_TAG = "!!omap"

_BREAKS = "\r\n\x85\u2028\u2029"
_BLANKZ = " \t" + _BREAKS


class Omap(tuple[tuple[Any, Any], ...]):
    """An ordered map, dumped as ``!!omap`` (a sequence of one-pair mappings)."""

    def __new__(cls, pairs: Iterable[tuple[Any, Any]] = ()) -> Omap:
        return super().__new__(cls, tuple((k, v) for k, v in pairs))


# --------------------------------------------------------------------------
# Psych's choice of style and its scalar resolution


_PLAIN, _SINGLE, _DOUBLE, _LITERAL = "plain", "single", "double", "literal"
# "<<" (the merge key) is written with an explicit tag: !!str '<<'.
_STR_TAGGED = "str-tagged"

# Psych 4.0's ScalarScanner, reduced to "would this read back as a string?".
_TIME = re.compile(
    r"-?\d{4}-\d{1,2}-\d{1,2}(?:[Tt]|\s+)\d{1,2}:\d\d:\d\d(?:\.\d*)?"
    r"(?:\s*(?:Z|[-+]\d{1,2}:?(?:\d\d)?))?"
)
_DATE = re.compile(r"\d{4}-(?:1[012]|0\d|\d)-(?:[12]\d|3[01]|0\d|\d)")
_FLOAT = re.compile(r"[-+]?(?:[0-9][0-9_,]*)?\.[0-9]*(?:[eE][-+][0-9]+)?")
_INTEGER = re.compile(
    r"[-+]?0b[0-1_,]+|[-+]?0[0-7_,]+|[-+]?(?:0|[1-9](?:[0-9]|,[0-9]|_[0-9])*)|[-+]?0x[0-9a-fA-F_,]+"
)


def _ruby_line_match(pattern: str, text: str, flags: int = re.ASCII) -> bool:
    """``text =~ pattern`` in Ruby: ``^``/``$`` are line anchors, ``\\d``/``\\s`` ASCII."""
    return re.search(pattern, text, re.MULTILINE | flags) is not None


def _is_alpha(ch: str) -> bool:
    # Ruby's [[:alpha:]]: letters, letter numbers, (most) combining marks, circled letters.
    cat = unicodedata.category(ch)
    return cat[0] in "LM" or cat == "Nl" or "\u24b6" <= ch <= "\u24e9"


def _is_word(ch: str) -> bool:
    # Ruby's [[:word:]]: alphabetic, marks, decimal digits, connector punctuation.
    return _is_alpha(ch) or unicodedata.category(ch) in ("Nd", "Pc")


_ALPHA_EXTRA = frozenset("_ \t\r\n\f\v!@#$%^&*(){}<>|/\\~;=")


def _line_starts(text: str) -> list[int]:
    if not text:
        return []
    return [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n" and i + 1 < len(text)]


def _alpha_run(text: str) -> bool:
    """``/^[^\\d.:-]?[[:alpha:]_\\s!@#$%^&*(){}<>|\\/\\\\~;=]+/`` at some line start."""

    def ok(ch: str) -> bool:
        return _is_alpha(ch) or ch in _ALPHA_EXTRA

    for i in _line_starts(text):
        if ok(text[i]):
            return True
        if text[i] not in "0123456789.:-\n" and i + 1 < len(text) and ok(text[i + 1]):
            return True
    return False


def _nonword_line_without_quote(text: str) -> bool:
    """``/^[^[:word:]][^"]*$/``: a line starting with a non-word character, no ``"`` after."""
    for i in _line_starts(text):
        if _is_word(text[i]):
            continue
        end = text.find("\n", i + 1)
        if '"' not in text[i + 1 : len(text) if end < 0 else end]:
            return True
    return False


def resolves_to_string(text: str) -> bool:
    """Whether Psych's scanner reads ``text`` back as a String."""
    if text == "":
        return False
    if _alpha_run(text) or "\n" in text:
        if len(text) > 5:
            return True
        if _ruby_line_match(r"^[^ytonf~]", text, re.IGNORECASE):
            return True
        if text == "~" or _ruby_line_match(r"^null$", text, re.IGNORECASE):
            return False
        if _ruby_line_match(r"^(?:yes|true|on|no|false|off)$", text, re.IGNORECASE):
            return False
        return True
    if _ruby_line_match(r"^" + _TIME.pattern + r"$", text):
        return _bad_time(text)
    if _ruby_line_match(r"^" + _DATE.pattern + r"$", text):
        return _bad_date(text)
    if _ruby_line_match(r"^\+?\.inf$|^-\.inf$|^\.nan$", text, re.ASCII | re.IGNORECASE):
        return False
    if _ruby_line_match(r"^:.", text):
        return False
    if _ruby_line_match(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9]){1,2}$", text):
        return False
    if _ruby_line_match(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9]){1,2}\.[0-9_]*$", text):
        return False
    if _ruby_line_match(r"^(?:" + _FLOAT.pattern + r")$", text):
        return re.fullmatch(r"[-+]?\.", text) is not None
    if _ruby_line_match(r"^(?:" + _INTEGER.pattern + r")$", text):
        return False
    return True


def _leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def _bad_date(text: str) -> bool:
    """Psych keeps an impossible date (2021-02-30) as a String."""
    m = re.search(r"^(\d{4})-(\d{1,2})-(\d{1,2})$", text, re.MULTILINE)
    if m is None:
        return True
    y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    days = [31, 29 if _leap(y) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    return not (1 <= mo <= 12 and 1 <= d <= days[mo - 1])


def _bad_time(text: str) -> bool:
    """Psych keeps a timestamp Ruby's Time refuses (month 13, 25:00) as a String."""
    parts = re.split(r"[ tT]", text, maxsplit=1)
    if len(parts) < 2:
        # Date and time apart by a tab or \r: Psych's own scanner raises on these.
        return True
    date, time = parts
    dm = re.match(r"(-?\d{4})-(\d{1,2})-(\d{1,2})", date)
    tm = re.search(r"(\d+):(\d+):(\d+)(?:\.(\d*))?\s*(Z|[-+]\d+(?::\d\d)?)?", time)
    if dm is None or tm is None:
        return True
    mo, d = int(dm.group(2)), int(dm.group(3))
    hh, mi, ss = int(tm.group(1)), int(tm.group(2)), int(tm.group(3))
    frac = tm.group(4) or ""
    if not (1 <= mo <= 12 and 1 <= d <= 31 and mi <= 59 and ss <= 60):
        return True
    if hh > 24 or (hh == 24 and (mi or ss or frac.strip("0"))):
        return True
    zone = tm.group(5)
    if zone and zone != "Z":
        zm = re.match(r"([+\-]?\d{1,2}):?(\d{1,2})?$", zone)
        if zm is None:
            return True
        hours = int(zm.group(1))
        offset = abs(hours) * 3600 + int(zm.group(2) or 0) * 60
        if offset >= 86400:
            return True
    return False


def requested_style(text: str) -> str:
    """The style Psych asks libyaml for (libyaml may still change it)."""
    # Ruby's \Z is "at the end, or before a final newline": Python's \n?\Z.
    if re.search(r"\n(?!\n?\Z)", text):
        return _LITERAL
    if text == "<<":
        return _STR_TAGGED
    if text in ("y", "n"):
        return _DOUBLE
    if _nonword_line_without_quote(text):
        return _DOUBLE
    if not resolves_to_string(text) or re.match(r"0[0-7]*[89]", text):
        return _SINGLE
    return _PLAIN


# --------------------------------------------------------------------------
# libyaml's analysis of a scalar


def _printable(ch: str) -> bool:
    c = ord(ch)
    return (
        c == 0x0A
        or 0x20 <= c <= 0x7E
        or 0xA0 <= c <= 0xD7FF
        or (0xE000 <= c <= 0xFFFD and c != 0xFEFF)
    )


_NON_PRINTABLE = re.compile("[^\n\x20-\x7e\xa0-\ud7ff\ue000-\ufefe\uff00-\ufffd]")
_BREAK_RE = re.compile("[\r\n\x85\u2028\u2029]")
_BREAK_SPACE = re.compile("[\r\n\x85\u2028\u2029] ")
_SPACE_BREAK = re.compile(" [\r\n\x85\u2028\u2029]")
# After the first character: ':' followed by a blank, a break or the end; '#' after one.
_BLOCK_INDICATOR = re.compile(":(?=[ \t\r\n\x85\u2028\u2029]|\\Z)|(?<=[ \t\r\n\x85\u2028\u2029])#")
_FLOW_INDICATOR = re.compile("[,?\\[\\]{}:]")


# Tokens for the writers: runs of ordinary characters, then single specials.
_TOKENS = re.compile("[^ '\r\n\x85\u2028\u2029]+|'+|.", re.S)
_LINES = re.compile("[^\r\n\x85\u2028\u2029]+|.", re.S)


class _Analysis:
    """libyaml's verdict on which styles can represent a scalar (yaml_emitter_analyze_scalar)."""

    __slots__ = ("length", "multiline", "flow_plain", "block_plain", "single_quoted", "block")

    def __init__(self, text: str) -> None:
        self.length = len(text.encode("utf-8", "surrogatepass"))
        if not text:
            self.multiline = False
            self.flow_plain = False
            self.block_plain = True
            self.single_quoted = True
            self.block = False
            return
        first = text[0]
        followed_ws = len(text) == 1 or text[1] in _BLANKZ
        block_ind = flow_ind = text.startswith(("---", "..."))
        if first in "#,[]{}&*!|>'\"%@`" or (first == "-" and followed_ws):
            flow_ind = block_ind = True
        if first in "?:":
            flow_ind = True
            block_ind = block_ind or followed_ws
        rest = text[1:]
        if _FLOW_INDICATOR.search(rest):
            flow_ind = True
        if _BLOCK_INDICATOR.search(text, 1):
            flow_ind = block_ind = True
        special = _NON_PRINTABLE.search(text) is not None
        line_breaks = _BREAK_RE.search(text) is not None
        leading = first == " " or first in _BREAKS
        trailing_space = text[-1] == " "
        trailing = trailing_space or text[-1] in _BREAKS
        break_space = _BREAK_SPACE.search(text) is not None
        space_break = _SPACE_BREAK.search(text) is not None
        self.multiline = line_breaks
        self.flow_plain = self.block_plain = self.single_quoted = self.block = True
        if leading or trailing:
            self.flow_plain = self.block_plain = False
        if trailing_space:
            self.block = False
        if break_space:
            self.flow_plain = self.block_plain = self.single_quoted = False
        if space_break or special:
            self.flow_plain = self.block_plain = self.single_quoted = self.block = False
        if line_breaks:
            self.flow_plain = self.block_plain = False
        if flow_ind:
            self.flow_plain = False
        if block_ind:
            self.block_plain = False


# --------------------------------------------------------------------------
# the emitter


def _ruby_float(v: float) -> str:
    """``Float#to_s``: shortest digits, exponent form outside 1e-4 <= |v| < 1e16."""
    if math.isnan(v):
        return ".nan"
    if math.isinf(v):
        return ".inf" if v > 0 else "-.inf"
    sign, digit_tuple, exp = decimal.Decimal(repr(v)).as_tuple()
    assert isinstance(exp, int)
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    # decpt: where the decimal point goes relative to the digits
    decpt = len(digit_tuple) + exp if digits != "0" else 1
    if digits == "0":
        body = "0.0"
    elif -3 <= decpt <= 15:
        if decpt <= 0:
            body = "0." + "0" * -decpt + digits
        elif decpt >= len(digits):
            body = digits + "0" * (decpt - len(digits)) + ".0"
        else:
            body = digits[:decpt] + "." + digits[decpt:]
    else:
        e = decpt - 1
        body = f"{digits[0]}.{digits[1:] or '0'}e{'-' if e < 0 else '+'}{abs(e):02d}"
    return ("-" if sign else "") + body


def _ruby_time(v: _dt.datetime) -> str:
    """Psych's format for a Time: nanoseconds, then ``Z`` for UTC or the offset.

    A timestamp without a zone is local time to Ruby; gitian runs with TZ=UTC,
    where Ruby writes ``+00:00``.
    """
    # Not strftime: glibc's %Y drops the zeros Ruby writes before a year below 1000.
    base = f"{v.year:04d}-{v:%m-%d %H:%M:%S}.{v.microsecond:06d}000"
    offset = v.utcoffset()
    if offset is None:
        return base + " +00:00"
    if v.tzinfo is _dt.UTC:
        return base + " Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return base + f" {sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


class _Emitter:
    def __init__(self) -> None:
        self.out: list[str] = []
        self.column = 0
        self.whitespace = True
        self.indention = True
        self.indent = -1
        self.indents: list[int] = []
        self.flow_level = 0
        self.open_ended = 0
        self.mapping_context = False
        self.simple_key_context = False

    # -- low-level writers

    def put(self, s: str) -> None:
        self.out.append(s)
        self.column += len(s)

    def put_break(self) -> None:
        self.out.append("\n")
        self.column = 0

    def write_break_char(self, ch: str) -> None:
        self.out.append(ch)
        self.column = 0

    def increase_indent(self, flow: bool, indentless: bool) -> None:
        self.indents.append(self.indent)
        if self.indent < 0:
            self.indent = BEST_INDENT if flow else 0
        elif not indentless:
            self.indent += BEST_INDENT

    def pop_indent(self) -> None:
        self.indent = self.indents.pop()

    def write_indent(self) -> None:
        indent = max(self.indent, 0)
        if (
            not self.indention
            or self.column > indent
            or (self.column == indent and not self.whitespace)
        ):
            self.put_break()
        if self.column < indent:
            self.put(" " * (indent - self.column))
        self.whitespace = True
        self.indention = True

    def write_indicator(
        self, indicator: str, need_ws: bool, is_ws: bool, is_indention: bool
    ) -> None:
        if need_ws and not self.whitespace:
            self.put(" ")
        self.put(indicator)
        self.whitespace = is_ws
        self.indention = self.indention and is_indention

    def write_tag(self, tag: str) -> None:
        if not self.whitespace:
            self.put(" ")
        self.put(tag)
        self.whitespace = False
        self.indention = False

    # -- document

    def document(self, value: Any) -> str:
        self.write_indent()
        self.write_indicator("---", True, False, False)
        self.open_ended = 0
        self.node(value, mapping=False, simple_key=False)
        self.write_indent()
        if not self.open_ended:
            self.open_ended = 1
        if self.open_ended == 2:
            self.write_indicator("...", True, False, False)
            self.open_ended = 0
            self.write_indent()
        return "".join(self.out)

    # -- nodes

    def node(self, value: Any, *, mapping: bool, simple_key: bool) -> None:
        self.mapping_context = mapping
        self.simple_key_context = simple_key
        if isinstance(value, Omap):
            self.write_tag(OMAP_TAG)
            self.sequence([{k: v} for k, v in value])
        elif isinstance(value, (list, tuple)):
            self.sequence(list(value))
        elif isinstance(value, Mapping):
            self.mapping(list(value.items()))
        else:
            text, style = self.scalar_text(value)
            self.scalar(text, style)

    def scalar_text(self, value: Any) -> tuple[str, str]:
        """The scalar's text and the style Psych requests for it."""
        if value is None:
            return "", _PLAIN
        if isinstance(value, bool):
            return ("true" if value else "false"), _PLAIN
        if isinstance(value, int):
            return str(value), _PLAIN
        if isinstance(value, float):
            return _ruby_float(value), _PLAIN
        if isinstance(value, _dt.datetime):
            return _ruby_time(value), _PLAIN
        if isinstance(value, _dt.date):
            return value.isoformat(), _PLAIN
        if isinstance(value, str):
            return value, requested_style(value)
        raise TypeError(f"cannot dump {type(value).__name__}")

    def sequence(self, items: list[Any]) -> None:
        if self.flow_level or not items:
            self.write_indicator("[", True, True, False)
            self.increase_indent(True, False)
            self.flow_level += 1
            if items:
                raise TypeError("non-empty flow sequences are not supported")
            self.flow_level -= 1
            self.pop_indent()
            self.write_indicator("]", False, False, False)
            return
        self.increase_indent(False, self.mapping_context and not self.indention)
        for item in items:
            self.write_indent()
            self.write_indicator("-", True, False, True)
            self.node(item, mapping=False, simple_key=False)
        self.pop_indent()

    def mapping(self, pairs: list[tuple[Any, Any]]) -> None:
        if self.flow_level or not pairs:
            self.write_indicator("{", True, True, False)
            if pairs:
                raise TypeError("non-empty flow mappings are not supported")
            self.write_indicator("}", False, False, False)
            return
        self.increase_indent(False, False)
        for key, value in pairs:
            self.write_indent()
            if self.simple_key(key):
                self.node(key, mapping=True, simple_key=True)
                self.write_indicator(":", False, False, False)
            else:
                self.write_indicator("?", True, False, True)
                self.node(key, mapping=True, simple_key=False)
                self.write_indent()
                self.write_indicator(":", True, False, True)
            self.node(value, mapping=True, simple_key=False)
        self.pop_indent()

    def simple_key(self, key: Any) -> bool:
        if isinstance(key, Omap):
            return not key and len(OMAP_TAG) <= 128
        if isinstance(key, (list, tuple, Mapping)):
            return not key
        text, _ = self.scalar_text(key)
        a = _Analysis(text)
        return not a.multiline and a.length <= 128

    # -- scalars

    def scalar(self, text: str, requested: str) -> None:
        a = _Analysis(text)
        style = requested
        if style == _STR_TAGGED:
            self.write_tag("!!str")
            style = _SINGLE
        if self.simple_key_context and a.multiline:
            style = _DOUBLE
        if style == _PLAIN:
            if (self.flow_level and not a.flow_plain) or (
                not self.flow_level and not a.block_plain
            ):
                style = _SINGLE
            if not a.length and (self.flow_level or self.simple_key_context):
                style = _SINGLE
        if style == _SINGLE and not a.single_quoted:
            style = _DOUBLE
        if style == _LITERAL and (not a.block or self.flow_level or self.simple_key_context):
            style = _DOUBLE
        allow_breaks = not self.simple_key_context
        self.increase_indent(True, False)
        if style == _PLAIN:
            self.write_plain(text, allow_breaks)
        elif style == _SINGLE:
            self.write_single(text, allow_breaks)
        elif style == _DOUBLE:
            self.write_double(text, allow_breaks)
        else:
            self.write_literal(text)
        self.pop_indent()

    def _write_folding(self, text: str, allow_breaks: bool, *, quoted: bool) -> None:
        """The body of a plain or single-quoted scalar, folding at single spaces past col 80.

        Works on runs of ordinary characters; spaces, breaks and quotes one by one.
        """
        spaces = breaks = False
        n = len(text)
        for m in _TOKENS.finditer(text):
            tok = m.group()
            i = m.start()
            if tok == " ":
                if (
                    allow_breaks
                    and not spaces
                    and self.column > BEST_WIDTH
                    and (not quoted or (i != 0 and i != n - 1))
                    and text[i + 1 : i + 2] != " "
                ):
                    self.write_indent()
                else:
                    self.put(" ")
                spaces = True
            elif tok in _BREAKS:
                if not breaks and tok == "\n":
                    self.put_break()
                self.write_break_char(tok)
                self.indention = True
                breaks = True
            else:
                if breaks:
                    self.write_indent()
                self.put(tok.replace("'", "''") if quoted else tok)
                self.indention = False
                spaces = breaks = False
        if quoted and breaks:
            self.write_indent()

    def write_plain(self, text: str, allow_breaks: bool) -> None:
        if not self.whitespace and (text or self.flow_level):
            self.put(" ")
        self._write_folding(text, allow_breaks, quoted=False)
        self.whitespace = False
        self.indention = False

    def write_single(self, text: str, allow_breaks: bool) -> None:
        self.write_indicator("'", True, False, False)
        self._write_folding(text, allow_breaks, quoted=True)
        self.write_indicator("'", False, False, False)
        self.whitespace = False
        self.indention = False

    _ESCAPES = {
        0x00: "0",
        0x07: "a",
        0x08: "b",
        0x09: "t",
        0x0A: "n",
        0x0B: "v",
        0x0C: "f",
        0x0D: "r",
        0x1B: "e",
        0x22: '"',
        0x5C: "\\",
        0x85: "N",
        0xA0: "_",
        0x2028: "L",
        0x2029: "P",
    }

    def write_double(self, text: str, allow_breaks: bool) -> None:
        self.write_indicator('"', True, False, False)
        spaces = False
        n = len(text)
        for i, ch in enumerate(text):
            c = ord(ch)
            if not _printable(ch) or c == 0xFEFF or ch in _BREAKS or ch in '"\\':
                esc = self._ESCAPES.get(c)
                if esc is None:
                    if c <= 0xFF:
                        esc = f"x{c:02X}"
                    elif c <= 0xFFFF:
                        esc = f"u{c:04X}"
                    else:
                        esc = f"U{c:08X}"
                self.put("\\" + esc)
                spaces = False
            elif ch == " ":
                if allow_breaks and not spaces and self.column > BEST_WIDTH and 0 < i < n - 1:
                    self.write_indent()
                    if text[i + 1] == " ":
                        self.put("\\")
                else:
                    self.put(ch)
                spaces = True
            else:
                self.put(ch)
                spaces = False
        self.write_indicator('"', False, False, False)
        self.whitespace = False
        self.indention = False

    def write_literal(self, text: str) -> None:
        self.write_indicator("|", True, False, False)
        if text[:1] in (" ",) or (text[:1] and text[0] in _BREAKS):
            self.write_indicator(str(BEST_INDENT), False, False, False)
        self.open_ended = 0
        chomp = ""
        if not text or text[-1] not in _BREAKS:
            chomp = "-"
        elif len(text) == 1 or text[-2] in _BREAKS:
            chomp = "+"
            self.open_ended = 2
        if chomp:
            self.write_indicator(chomp, False, False, False)
        self.put_break()
        self.indention = True
        self.whitespace = True
        breaks = True
        for m in _LINES.finditer(text):
            tok = m.group()
            if tok in _BREAKS:
                if tok == "\n":
                    self.put_break()
                else:
                    self.write_break_char(tok)
                self.indention = True
                breaks = True
            else:
                if breaks:
                    self.write_indent()
                self.put(tok)
                self.indention = False
                breaks = False


def dump(value: Any) -> bytes:
    """``value.to_yaml`` as Ruby 3.1 (Psych 4.0.3, libyaml 0.2.5) writes it."""
    return _Emitter().document(value).encode("utf-8")
