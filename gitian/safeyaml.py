"""Safe YAML loading, for descriptors and for result and assert files.

Everything loaded here was written by other people.  :func:`safe_yaml`
refuses, with one line, every tag (but, in result and assert files, the ones
Ruby's Psych wrote), anchors that expand beyond a bound, deep nesting and
anything else that is not plain data, before a single node is built; errors
name the file and the line.  PyYAML does the reading (its C loader, libyaml,
when present).

Psych wrote, over a decade of Ruby versions, ``!!omap`` and the older
``!omap`` on ordered maps, and the non-specific tag ``!`` on quoted scalars
(``! '...'``), which YAML defines as a plain string.  PyYAML resolves
``! '12'`` as an integer, so such scalars are made strings here, as Psych
and the YAML spec read them.
"""

from __future__ import annotations

from typing import Any

import yaml

from gitian.errors import DescriptorError
from gitian.text import printable

# Bounds on what the YAML may expand to, checked on the parser's event stream
# before any node is built: alias bombs and deep nesting are refused in
# milliseconds, and the C composer (which recurses without a limit and would
# crash the interpreter on ``[[[[...``) never sees more than MAX_DEPTH levels.
MAX_EXPANDED_NODES = 50_000
MAX_DEPTH = 64

#: The C safe loader when PyYAML was built with libyaml, else the pure-Python one.
_LOADER: Any = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader


def safe_yaml(raw: bytes, where: str, *, psych: bool = False) -> Any:
    """Load YAML safely: no tags (but Psych's with ``psych``), bounded aliases.

    Raises :class:`DescriptorError` with a one-line message starting with
    ``where``; callers re-wrap it for other kinds of file.  Time and memory
    are bounded by the input's size: the event stream is checked for tags,
    nesting depth and alias expansion before a single node is built.
    """
    where = printable(where)
    if b"\x00" in raw:
        raise DescriptorError(f"{where}: binary data (NUL byte), not YAML")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DescriptorError(f"{where}: not UTF-8 text (byte {e.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        strings = _scan_events(text, where, psych)
        loader = _LOADER(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_node(node, where, psych, strings)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        position = getattr(e, "position", None)  # a ReaderError: bad character
        if mark is not None:
            at = f" at line {mark.line + 1}"
        elif isinstance(position, int):
            at = f" at line {text.count(chr(10), 0, position) + 1}"
        else:
            at = ""
        problem = getattr(e, "problem", None) or (str(e).splitlines() or [""])[0]
        if "nesting depth" in problem:  # newer libyaml has a limit of its own
            raise DescriptorError(f"{where}: YAML nested too deeply{at}") from None
        raise DescriptorError(printable(f"{where}: invalid YAML{at}: {problem}")) from None
    except (ValueError, OverflowError) as e:
        # The constructors: a timestamp like 2020-13-45, an integer with more
        # digits than Python converts, a date out of range.
        first = (str(e).splitlines() or [""])[0][:100]
        raise DescriptorError(printable(f"{where}: invalid YAML value: {first}")) from None
    except RecursionError:  # pragma: no cover - MAX_DEPTH keeps far below the limit
        raise DescriptorError(f"{where}: YAML nested too deeply") from None


_STANDARD = "tag:yaml.org,2002:"
_OMAP = _STANDARD + "omap"
_STR = _STANDARD + "str"
#: Psych's spellings of an ordered map.
_OMAP_TAGS = frozenset({_OMAP, "!omap"})
# What plain scalars and untagged collections resolve to.  ``<<`` (merge) and
# ``=`` (value) resolve to tags of their own and are refused with the rest.
_IMPLICIT_TAGS = {
    _STANDARD + t for t in ("str", "int", "float", "bool", "null", "timestamp", "seq", "map")
}


def _scan_events(text: str, where: str, psych: bool) -> set[tuple[int, int]]:
    """Refuse tags, deep nesting and alias expansion beyond the bounds; return
    where the quoted scalars with the non-specific tag ``!`` start.

    Works on the parser's event stream (libyaml's parser does not recurse) and
    stops at the first violation, so a billion-laughs document or a hundred
    thousand ``[`` cost microseconds, not minutes.
    """
    strings: set[tuple[int, int]] = set()
    expanded = 0
    stack: list[tuple[str | None, int]] = []  # open collections: (anchor, expanded at start)
    anchors: dict[str, int] = {}  # finished anchor -> nodes it expands to
    open_anchors: set[str] = set()
    for event in yaml.parse(text, Loader=_LOADER):
        mark = event.start_mark
        at = f" (line {mark.line + 1})" if mark is not None else ""
        if isinstance(event, yaml.DocumentStartEvent) and event.tags:
            raise DescriptorError(f"{where}: YAML %TAG directives are not allowed{at}")
        if isinstance(event, yaml.AliasEvent):
            name = str(event.anchor)
            if name in open_anchors:
                raise DescriptorError(f"{where}: recursive YAML alias{at}")
            if name not in anchors:
                raise DescriptorError(f"{where}: YAML alias to an undefined anchor{at}")
            expanded += anchors[name]
        elif isinstance(event, yaml.NodeEvent):
            tag = getattr(event, "tag", None)
            if tag is None:
                pass
            elif psych and tag in _OMAP_TAGS and isinstance(event, yaml.SequenceStartEvent):
                pass
            elif psych and tag == "!" and getattr(event, "style", None) in ("'", '"') and mark:
                strings.add((mark.line, mark.column))
            else:
                raise DescriptorError(f"{where}: YAML tag {printable(tag)!r} is not allowed{at}")
            anchor = event.anchor
            if anchor is not None and (anchor in anchors or anchor in open_anchors):
                raise DescriptorError(f"{where}: YAML anchor defined twice{at}")
            expanded += 1
            if isinstance(event, yaml.CollectionStartEvent):
                if len(stack) >= MAX_DEPTH:
                    raise DescriptorError(
                        f"{where}: YAML nested deeper than {MAX_DEPTH} levels{at}"
                    )
                stack.append((anchor, expanded - 1))
                if anchor is not None:
                    open_anchors.add(anchor)
            elif anchor is not None:
                anchors[anchor] = 1
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, before = stack.pop()
            if anchor is not None:
                open_anchors.discard(anchor)
                anchors[anchor] = expanded - before
        if expanded > MAX_EXPANDED_NODES:
            raise DescriptorError(
                f"{where}: YAML has more than {MAX_EXPANDED_NODES} nodes "
                f"(counting each alias as what it expands to){at}"
            )
    return strings


def _check_node(root: yaml.Node, where: str, psych: bool, strings: set[tuple[int, int]]) -> None:
    """Check resolved tags, scalar values and duplicate mapping keys; give
    Psych's ``!omap`` and ``! '...'`` their meaning (``strings``: where the
    latter start).

    The graph is already bounded by :func:`_scan_events`; shared (aliased)
    nodes are visited once.  Scalars that the constructor would fail on
    (``2020-13-45``, an integer of 5000 digits) are refused here, where the
    key they belong to is known.
    """
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    constructor = yaml.constructor.SafeConstructor()
    while stack:
        node, key = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        at = f"key {printable(key, quote=True, limit=60)}" if key else f"line {_line(node)}"
        if psych and node.tag in _OMAP_TAGS and isinstance(node, yaml.SequenceNode):
            node.tag = _OMAP
        elif isinstance(node, yaml.ScalarNode) and node.start_mark is not None:
            if (node.start_mark.line, node.start_mark.column) in strings:
                node.tag = _STR
        tag = node.tag
        if tag not in _IMPLICIT_TAGS and not (psych and tag == _OMAP):
            raise DescriptorError(f"{where}: YAML tag {printable(tag)!r} is not allowed ({at})")
        if isinstance(node, yaml.ScalarNode):
            if tag in (_STANDARD + "int", _STANDARD + "timestamp", _STANDARD + "float"):
                try:
                    constructor.construct_object(node, deep=True)
                except (ValueError, OverflowError, yaml.YAMLError) as e:
                    problem = (str(e).splitlines() or [""])[0][:80]
                    raise DescriptorError(f"{where}: invalid value for {at}: {problem}") from None
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((c, key) for c in node.value)
        elif isinstance(node, yaml.MappingNode):
            keys: set[tuple[str, str]] = set()
            for k, v in node.value:
                child = key
                if isinstance(k, yaml.ScalarNode):
                    ident = (str(k.tag), str(k.value))
                    if ident in keys:
                        shown = printable(str(k.value), quote=True, limit=60)
                        raise DescriptorError(
                            f"{where}: key {shown} appears twice in one mapping (line {_line(k)})"
                        )
                    keys.add(ident)
                    name = str(k.value)[:60]
                    child = (f"{key}.{name}" if key else name)[:120]
                stack.append((k, key))
                stack.append((v, child))


def _line(node: yaml.Node) -> int:
    mark = node.start_mark
    return int(mark.line) + 1 if mark is not None else 0
