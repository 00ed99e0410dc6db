"""Write YAML as Ruby's ``to_yaml`` writes it: Psych's decisions, libyaml's emitter.

The classic tools dumped result files and asserts with Psych 4.0 on libyaml
0.2.5, and signatures cover those exact bytes.  Psych turns each value into
events for libyaml and, for a string, *requests* a style: literal (``|``)
when a line break is followed by more text, double-quoted for ``y``/``n``
and for text with a line starting with a non-word character and no ``"``,
single-quoted when the text would read back as something other than a
string (``'22.0'``, ``'true'``, ``''``), plain otherwise.  This module makes
those decisions (and Ruby's forms of floats and times, and ``!!omap``) and
hands the events to the same emitter, libyaml, through PyYAML's
:class:`yaml.CDumper`; libyaml then downgrades styles it cannot use, folds
long lines, indents and writes every byte, exactly as it did for Ruby.
PyYAML's pure-Python emitter differs from libyaml in those choices, so it is
never used as a fallback.

Nothing here reads YAML; :func:`gitian.safeyaml.safe_yaml` does that.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import io
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import yaml

from gitian.errors import ToolMissingError

_OMAP_TAG = "tag:yaml.org,2002:omap"
_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"


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
# Ruby's text for numbers and times


def _ruby_float(v: float) -> str:
    """``Float#to_s``: shortest digits, exponent form outside 1e-4 <= |v| < 1e16 (or 1e15)."""
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
    elif -3 <= decpt <= 0:
        body = "0." + "0" * -decpt + digits
    elif len(digits) <= decpt <= 15:
        body = digits + "0" * (decpt - len(digits)) + ".0"
    # With digits after the point Ruby stays fixed one place longer (1234567890123456.8).
    elif 0 < decpt < len(digits) and decpt <= 16:
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


# --------------------------------------------------------------------------
# the events Psych gives libyaml

# PyYAML's names for libyaml's scalar styles (None: plain).
_STYLE_INDICATOR = {_PLAIN: None, _SINGLE: "'", _DOUBLE: '"', _LITERAL: "|"}


def _scalar(value: Any) -> yaml.ScalarEvent:
    """A scalar event with the tag, implicit flags and style Psych's YAMLTree gives it."""
    if isinstance(value, str):
        # CEmitter takes an exact str only, so a subclass goes in as its plain text.
        text = str.__str__(value)
        style = requested_style(text)
        if style == _STR_TAGGED:
            return yaml.ScalarEvent(None, _STR_TAG, (False, False), text, style="'")
        return yaml.ScalarEvent(None, None, (True, True), text, style=_STYLE_INDICATOR[style])
    # Anything else may only be plain: should libyaml have to quote it, it marks it "!".
    if value is None:
        return yaml.ScalarEvent(None, _NULL_TAG, (True, False), "")
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = _ruby_float(value)
    elif isinstance(value, _dt.datetime):
        text = _ruby_time(value)
    elif isinstance(value, _dt.date):
        text = value.isoformat()
    else:
        raise TypeError(f"cannot dump {type(value).__name__}")
    return yaml.ScalarEvent(None, None, (True, False), text)


def _events(value: Any) -> Iterator[yaml.Event]:
    # Collections are requested in block style; libyaml itself writes empty ones as [] / {}.
    if isinstance(value, Omap):
        yield yaml.SequenceStartEvent(None, _OMAP_TAG, False, flow_style=False)
        for key, item in value:
            yield yaml.MappingStartEvent(None, None, True, flow_style=False)
            yield from _events(key)
            yield from _events(item)
            yield yaml.MappingEndEvent()
        yield yaml.SequenceEndEvent()
    elif isinstance(value, (list, tuple)):
        yield yaml.SequenceStartEvent(None, None, True, flow_style=False)
        for item in value:
            yield from _events(item)
        yield yaml.SequenceEndEvent()
    elif isinstance(value, Mapping):
        yield yaml.MappingStartEvent(None, None, True, flow_style=False)
        for key, item in value.items():
            yield from _events(key)
            yield from _events(item)
        yield yaml.MappingEndEvent()
    else:
        yield _scalar(value)


#: What to do about a PyYAML without libyaml (its pure-Python emitter writes other bytes).
LIBYAML_HINT = (
    "reinstall PyYAML from a wheel (pip install --force-reinstall --only-binary=:all: PyYAML), "
    "or use Debian's python3-yaml, or install libyaml-dev and a C compiler before pip builds it"
)


def _libyaml_dumper() -> type[yaml.CDumper]:
    dumper: type[yaml.CDumper] | None = getattr(yaml, "CDumper", None)
    if dumper is None:
        raise ToolMissingError(
            "PyYAML was built without libyaml, which gitian needs to write result files",
            hint=LIBYAML_HINT,
        )
    return dumper


def dump(value: Any) -> bytes:
    """``value.to_yaml`` as Ruby 3.1 (Psych 4.0.3, libyaml 0.2.5) writes it."""
    out = io.BytesIO()
    yaml.emit(
        [
            # UTF-8 needs no BOM; a bytes stream makes CEmitter hand over libyaml's bytes as is.
            yaml.StreamStartEvent(encoding="utf-8"),
            yaml.DocumentStartEvent(explicit=True),
            *_events(value),
            # Psych ends implicitly: libyaml writes "..." only after an open-ended |+ scalar.
            yaml.DocumentEndEvent(explicit=False),
            yaml.StreamEndEvent(),
        ],
        out,
        Dumper=_libyaml_dumper(),
        # Psych's settings: libyaml's defaults (width 0 means 80), with unicode on.
        indent=2,
        width=80,
        allow_unicode=True,
        line_break="\n",
    )
    return out.getvalue()
