"""A strict reader for the plain block YAML that result files, asserts and
most descriptors are made of.

Loading PyYAML costs gverify's start-up about a third of its whole time
budget (issue 2), and every real assert and most descriptors use a small
part of YAML: block mappings and sequences, ``!!omap`` sequences, literal
block scalars (``|``, ``|-``, ``|+``), one-line plain, single- and
double-quoted scalars, comments.  :func:`load` reads exactly that, and for
anything else - folded or multi-line scalars, flow collections, anchors,
aliases, tags but ``!!omap``, directives, several documents, tabs where
indentation is, duplicate keys, plain values that YAML 1.1 might read as
anything but a string, a small integer, a boolean or null - raises
:class:`Unsupported`, and the caller (:func:`gitian.safeyaml.safe_yaml`)
uses PyYAML.

What it returns is what ``yaml.load(text, Loader=yaml.CSafeLoader)``
returns for the same text (tests/unit/test_miniyaml.py checks that against
PyYAML on real files, on edge cases and on fuzzed input); when in doubt it
says Unsupported, which is never wrong.  It never raises anything else.
"""

from __future__ import annotations

from gitian.lazyre import LazyPattern

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Unsupported(Exception):
    """The text is outside the subset: use the full loader."""


MAX_NODES = 10_000
MAX_DEPTH = 20

# Characters YAML does not allow in a document, and line breaks other than
# "\n" (\r, NEL, LS, PS) and the byte order mark, which this reader leaves
# to PyYAML.
_BAD_CHARS = LazyPattern("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")
_ASCII_ALLOWED = b"\t\n" + bytes(range(0x20, 0x7F))
# YAML 1.1's implicit types (PyYAML's resolvers), for plain scalars that do
# not look like plain strings: any match sends the text to PyYAML.
_NUMBER_OR_TIME = LazyPattern(
    r"[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?"
    r"|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
    r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*"
    r"|[-+]?\.(?:inf|Inf|INF)"
    r"|\.(?:nan|NaN|NAN)"
    r"|[-+]?0b[0-1_]+"
    r"|[-+]?0[0-7_]+"
    r"|[-+]?(?:0|[1-9][0-9_]*)"
    r"|[-+]?0x[0-9a-fA-F_]+"
    r"|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+"
    r"|[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"
    r"|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?"
    r"(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?"
    r"(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?"
)
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE = frozenset({"yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"})
_FALSE = frozenset({"no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"})
# First characters of a plain scalar that YAML reads as an indicator.
_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@`")
# Characters that may start a plain scalar resolving to something else than
# a string (PyYAML's resolvers are chosen by the first character).
_RESOLVED_FIRST = frozenset("-+0123456789.~<=yYnNtTfFoO")
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./")
_DIGITS = frozenset("0123456789")


def load(text: str, allow_omap: bool = False) -> Any:
    """The document in ``text`` (a leading BOM already removed), or
    :class:`Unsupported`."""
    try:
        if text.isascii():
            # Delete what is allowed; anything left is a control character.
            if text.encode("ascii").translate(None, _ASCII_ALLOWED):
                raise Unsupported
        elif _BAD_CHARS.search(text):
            raise Unsupported
        return _Reader(text.split("\n"), allow_omap).document()
    except Unsupported:
        raise
    except (RecursionError, MemoryError, IndexError, ValueError):  # pragma: no cover
        raise Unsupported from None


def _plain(value: str) -> Any:
    """A plain scalar's value, resolved as YAML 1.1 (PyYAML) does."""
    if not value or value[0] not in _RESOLVED_FIRST:
        return value
    if value in _NULLS:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    first = value[0]
    if first in "<=":
        raise Unsupported  # merge and value keys
    if first in "-+0123456789.":
        digits = value[1:] if first == "-" else value
        if (
            digits
            and len(digits) <= 18
            and all(c in _DIGITS for c in digits)
            and (digits == "0" or digits[0] != "0")
        ):
            return int(value)
        if _NUMBER_OR_TIME.fullmatch(value):
            raise Unsupported
    return value


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


class _Reader:
    def __init__(self, lines: list[str], allow_omap: bool) -> None:
        self.lines = lines
        # The last element is what follows the last "\n": "" is the end of
        # the text, anything else a last line without a line break.
        self.end = len(lines) if lines[-1] else len(lines) - 1
        self.allow_omap = allow_omap
        self.nodes = 0

    # ---------------------------------------------------------------- lines

    def skip(self, i: int) -> int:
        """The first line from ``i`` on that is neither blank nor a comment."""
        lines = self.lines
        while i < self.end:
            line = lines[i]
            stripped = line.lstrip(" ")
            if stripped and stripped[0] != "#":
                if "\t" in line:
                    raise Unsupported
                return i
            if stripped.startswith("\t"):
                raise Unsupported
            i += 1
        return i

    def next_entry(self, i: int, n: int) -> tuple[int, str | None]:
        """The next content line from ``i`` on and its text from column ``n``;
        ``None`` when the collection at column ``n`` ends there."""
        i = self.skip(i)
        if i >= self.end:
            return i, None
        line = self.lines[i]
        indent = _indent(line)
        if indent > n:
            raise Unsupported
        return i, (line[n:] if indent == n else None)

    def enter(self, depth: int) -> None:
        """Count a new collection ``depth`` levels down."""
        if depth > MAX_DEPTH:
            raise Unsupported
        self.count()

    def count(self) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise Unsupported

    # ------------------------------------------------------------- document

    def document(self) -> Any:
        i = self.skip(0)
        omap = False
        if i < self.end and self.lines[i].startswith("---"):
            head = self.lines[i].rstrip(" ")
            if head == "--- !!omap" and self.allow_omap:
                omap = True
            elif head != "---":
                raise Unsupported
            i = self.skip(i + 1)
        if i >= self.end:
            if omap:
                raise Unsupported
            return None
        line = self.lines[i]
        n = _indent(line)
        value: Any
        if _is_entry(line[n:]):
            value, i = self.sequence(i, n, 0)
            if omap:
                value = _omap(value)
        elif omap:
            raise Unsupported
        else:
            value, i = self.mapping(i, n, 0)
        if self.skip(i) < self.end:
            raise Unsupported
        return value

    # ---------------------------------------------------------- collections

    def sequence(self, i: int, n: int, depth: int) -> tuple[list[Any], int]:
        """The block sequence whose entries start at column ``n``, from line ``i``."""
        self.enter(depth)
        items: list[Any] = []
        while True:
            i, text = self.next_entry(i, n)
            if text is None or not _is_entry(text):
                break  # (not an entry: the mapping this sequence is a value of goes on)
            rest = text[1:]
            content = rest.lstrip(" ")
            if not content or content[0] == "#":
                value, i = self.block_value(i + 1, n, depth + 1, same_indent_seq=False)
                items.append(value)
                continue
            column = n + 1 + len(rest) - len(content)
            if _is_entry(content):
                raise Unsupported  # "- - x"
            if _split_key(content) is not None:
                value, i = self.mapping(i, column, depth + 1, first=content)
                items.append(value)
                continue
            value, i = self.inline_value(i, content, n, depth + 1)
            items.append(value)
        return items, i

    def mapping(
        self, i: int, n: int, depth: int, first: str | None = None
    ) -> tuple[dict[str, Any], int]:
        """The block mapping whose keys start at column ``n``, from line ``i``.

        ``first`` is the text of its first entry when that starts inside a
        sequence entry's line (``- key: value``)."""
        self.enter(depth)
        out: dict[str, Any] = {}
        while True:
            if first is not None:
                text, first = first, None
            else:
                i, line = self.next_entry(i, n)
                if line is None:
                    break
                if _is_entry(line):
                    raise Unsupported
                text = line
            split = _split_key(text)
            if split is None:
                raise Unsupported
            key, rest = split
            if key in out:
                raise Unsupported
            self.count()
            content = rest.lstrip(" ")
            if rest and not rest.startswith(" "):
                raise Unsupported
            if not content or content[0] == "#":
                out[key], i = self.block_value(i + 1, n, depth + 1, same_indent_seq=True)
            elif content.rstrip(" ") == "!!omap []" and self.allow_omap:
                self.count()
                self.inline_rest(i, "", n)
                out[key], i = [], i + 1
            elif content.rstrip(" ") == "!!omap" and self.allow_omap:
                j = self.skip(i + 1)
                if j >= self.end:
                    raise Unsupported
                line = self.lines[j]
                indent = _indent(line)
                if indent < n or not _is_entry(line[indent:]):
                    raise Unsupported
                items, i = self.sequence(j, indent, depth + 1)
                out[key] = _omap(items)
            else:
                out[key], i = self.inline_value(i, content, n, depth + 1)
        return out, i

    def block_value(self, i: int, n: int, depth: int, *, same_indent_seq: bool) -> tuple[Any, int]:
        """The value on the lines after an entry with nothing after its ``:``
        or ``-``: a nested collection, or null."""
        j = self.skip(i)
        if j >= self.end:
            self.count()
            return None, j
        line = self.lines[j]
        indent = _indent(line)
        text = line[indent:]
        if indent == n and same_indent_seq and _is_entry(text):
            return self.sequence(j, n, depth)
        if indent <= n:
            self.count()
            return None, j
        if _is_entry(text):
            return self.sequence(j, indent, depth)
        if _split_key(text) is None:
            raise Unsupported  # a scalar on a line of its own
        return self.mapping(j, indent, depth)

    # -------------------------------------------------------------- scalars

    def inline_value(self, i: int, content: str, n: int, depth: int) -> tuple[Any, int]:
        """The scalar that starts on line ``i`` after ``key:`` or ``-``, in a
        collection at column ``n``; the index of the line after it."""
        self.count()
        if content[0] == "|":
            return self.literal(i, content, n)
        first = content[0]
        if first in "[{":
            # Only the empty flow collections: ``[]`` and ``{}``.
            rest = content[2:]
            if content[:2] not in ("[]", "{}") or (rest and not rest.startswith(" ")):
                raise Unsupported
            self.inline_rest(i, rest, n)
            return ([] if first == "[" else {}), i + 1
        if first == "'":
            value, rest = _single_quoted(content)
        elif first == '"':
            value, rest = _double_quoted(content)
        else:
            value, rest = _plain_text(content), ""
        self.inline_rest(i, rest, n)
        return (_plain(value) if first not in "'\"" else value), i + 1

    def inline_rest(self, i: int, rest: str, n: int) -> None:
        """Check what follows a one-line value on line ``i`` (at most a
        comment) and that no later line continues it."""
        if rest:
            stripped = rest.lstrip(" ")
            if stripped and (stripped[0] != "#" or stripped == rest):
                raise Unsupported
        j = i + 1
        while j < self.end and not self.lines[j].strip(" "):
            j += 1
        if j < self.end and _indent(self.lines[j]) > n:
            raise Unsupported

    def literal(self, i: int, header: str, n: int) -> tuple[str, int]:
        """A literal block scalar (``|``, ``|-``, ``|+``) whose header is on
        line ``i``, in a collection at column ``n``: what PyYAML's scanner
        makes of it, line by line."""
        indicator = header.rstrip(" ")
        if indicator == "|":
            chomping: bool | None = None
        elif indicator == "|-":
            chomping = False
        elif indicator == "|+":
            chomping = True
        else:
            raise Unsupported
        lines, end = self.lines, self.end
        min_indent = max(n + 1, 1)
        # Leading blank lines, and the indentation of the first other line.
        j = i + 1
        blanks = 0
        max_indent = 0
        while j < end:
            line = lines[j]
            lead = _indent(line)
            max_indent = max(max_indent, lead)
            if lead < len(line):
                break
            if j == end - 1 and lines[-1]:  # spaces, then the end of the text
                j = end
                break
            blanks += 1
            j += 1
        indent = max(min_indent, max_indent)
        if j >= end or _indent(lines[j]) != indent:
            # No content line: an empty scalar, followed by what the
            # line at j starts (or the end of the text).
            if j < end and lines[j][_indent(lines[j])] == "\t":
                raise Unsupported
            return ("\n" * blanks if chomping is True else ""), j
        if lines[j][indent] == "\t":
            raise Unsupported
        # The content: every line from j on that has `indent` spaces, or
        # only spaces.  A line of at most `indent` spaces is a line break;
        # inside the content that gives the same text as an empty line.
        prefix = " " * indent
        k = j
        while k < end:
            line = lines[k]
            if line.startswith(prefix) or not line.strip(" "):
                k += 1
                continue
            break
        last = k  # one after the last content line
        while len(lines[last - 1]) <= indent and not lines[last - 1].strip(" "):
            last -= 1
        text = "\n" * blanks + "\n".join([line[indent:] for line in lines[j:last]])
        if chomping is False:
            return text, k
        text += "\n" if last - 1 < len(lines) - 1 else ""
        if chomping is True:
            # The trailing line breaks (a last line without one adds none).
            text += "\n" * (min(k, len(lines) - 1) - last)
        return text, k


def _is_entry(text: str) -> bool:
    """Whether ``text`` (a line from its indentation on) is a sequence entry."""
    return text == "-" or text.startswith("- ")


def _split_key(text: str) -> tuple[str, str] | None:
    """``(key, rest)`` when ``text`` is a mapping entry with a plain or quoted
    key that is a string; ``rest`` is what follows the ``:``."""
    first = text[0]
    if first in "'\"":
        try:
            key, rest = _single_quoted(text) if first == "'" else _double_quoted(text)
        except Unsupported:
            return None
        if rest[:1] == ":" and (len(rest) == 1 or rest[1] == " "):
            return key, rest[1:]
        return None
    j = 0
    while j < len(text) and text[j] in _KEY_CHARS:
        j += 1
    if j == 0 or j == len(text) or text[j] != ":":
        return None
    if j + 1 < len(text) and text[j + 1] != " ":
        return None
    key = text[:j]
    if key[0] in "-." or key[0] in _DIGITS or not isinstance(_plain(key), str):
        raise Unsupported
    return key, text[j + 1 :]


def _single_quoted(text: str) -> tuple[str, str]:
    """A one-line single-quoted scalar at the start of ``text``, and the rest."""
    j = 1
    while True:
        k = text.find("'", j)
        if k < 0:
            raise Unsupported  # multi-line, or not closed
        if text[k + 1 : k + 2] == "'":
            j = k + 2
            continue
        return text[1:k].replace("''", "'"), text[k + 1 :]


def _double_quoted(text: str) -> tuple[str, str]:
    """A one-line double-quoted scalar without escapes, and the rest."""
    k = text.find('"', 1)
    if k < 0 or "\\" in text[1:k]:
        raise Unsupported
    return text[1:k], text[k + 1 :]


def _plain_text(content: str) -> str:
    """The text of a one-line plain scalar (its comment removed)."""
    if content[0] in _INDICATORS:
        raise Unsupported
    cut = content.find(" #")
    value = (content if cut < 0 else content[:cut]).rstrip(" ")
    if ": " in value or value.endswith(":") or any(c in value for c in "[]{}"):
        raise Unsupported
    return value


def _omap(items: list[Any]) -> list[tuple[Any, Any]]:
    """An ``!!omap``: each entry a one-pair mapping, made a (key, value) pair."""
    pairs: list[tuple[Any, Any]] = []
    for item in items:
        if not isinstance(item, dict) or len(item) != 1:
            raise Unsupported
        pairs.append(next(iter(item.items())))
    return pairs
