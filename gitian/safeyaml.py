"""Safe YAML loading, for descriptors and for result and assert files.

Everything loaded here was written by other people.  :func:`safe_yaml`
refuses, with one line, every tag but ``!!omap`` (where allowed), anchors
that expand beyond a bound, deep nesting and anything else that is not plain
data, before a single node is built; errors name the file and the line.

Most files (every real assert, most descriptors) are plain block YAML that
:mod:`gitian.miniyaml` reads exactly as PyYAML would, in a fraction of the
time and without loading PyYAML at all; PyYAML (its C loader when present)
is imported only for the rest.  gverify's start-up time is part of its speed
goal (issue 2).
"""

from __future__ import annotations

import sys

from gitian import miniyaml
from gitian.errors import DescriptorError
from gitian.lazyre import LazyPattern
from gitian.text import printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    import yaml

# Bounds on what the YAML may expand to, checked on the parser's event stream
# before any node is built: alias bombs and deep nesting are refused in
# milliseconds, and the C composer (which recurses without a limit and would
# crash the interpreter on ``[[[[...``) never sees more than MAX_DEPTH levels.
MAX_EXPANDED_NODES = 50_000
MAX_DEPTH = 64

def _yaml() -> Any:
    """PyYAML, imported on first use with the regular expressions it makes at
    import compiled only when first used.

    PyYAML compiles about a dozen at import, for its pure-Python reader,
    scanner and resolver; one of them (the reader's test for unprintable
    characters, which the C loader never runs) alone costs several
    milliseconds.  PyYAML only ever calls methods on them, which
    :class:`~gitian.lazyre.LazyPattern` passes on.  ``re.compile`` is swapped only for the
    length of this one import, before anything else of PyYAML exists.
    """
    module = sys.modules.get("yaml")
    if module is not None:
        return module
    import re  # noqa: PLC0415

    real = re.compile
    re.compile = LazyPattern  # type: ignore[assignment]
    try:
        import yaml  # noqa: PLC0415
    finally:
        re.compile = real
    return yaml


def _safe_loader() -> Any:
    """The C safe loader when libyaml is there, else the pure-Python one."""
    pyyaml = _yaml()
    return getattr(pyyaml, "CSafeLoader", None) or pyyaml.SafeLoader


def safe_yaml(raw: bytes, where: str, *, allow_omap: bool = False) -> Any:
    """Load YAML safely: no tags (except ``!!omap`` when allowed), bounded aliases.

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
        return miniyaml.load(text, allow_omap)
    except miniyaml.Unsupported:
        pass
    pyyaml = _yaml()
    try:
        try:
            return _load_unscanned(text, where, allow_omap)
        except _ScanNeeded:
            pass
        _scan_events(text, where, allow_omap)
        loader = _safe_loader()(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_node(node, where, allow_omap)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except pyyaml.YAMLError as e:
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
# What plain scalars and untagged collections resolve to.  ``<<`` (merge) and
# ``=`` (value) resolve to tags of their own and are refused with the rest.
_IMPLICIT_TAGS = {
    _STANDARD + t for t in ("str", "int", "float", "bool", "null", "timestamp", "seq", "map")
}


# --------------------------------------------------------------------------
# The fast path: most files (every real assert) hold no tag, anchor, alias or
# flow collection, and then the event scan cannot find anything that a look
# at the composed tree does not.  Composing first is only safe when nesting
# is bounded before composing (the C composer recurses), so the fast path is
# taken only when the text itself bounds it; whenever anything is in doubt -
# the text, a composer error, the tree - the document goes the scanned way,
# and gets exactly the verdict and message it always got.


class _ScanNeeded(Exception):
    """The fast path does not apply: scan the events first."""


_BLANKZ = frozenset(" \t\r\n\x85\u2028\u2029")  # libyaml's blanks and breaks
_FAST_MAX_DEPTH = 1000  # nesting the C composer survives even with a small stack


def _scan_needless(text: str, allow_omap: bool) -> bool:
    """Whether ``text`` provably holds no tag but ``!!omap``, no %TAG directive,
    no anchor or alias, no flow collection and no nesting deeper than
    :data:`_FAST_MAX_DEPTH`.

    A tag or a %TAG directive needs a '!', and every '!' here must begin or
    end a ``!!omap`` followed by a blank.  Anchors need '&', aliases '*', flow
    collections '[' or '{'.  (Such characters inside scalars only send the
    text the scanned way.)  Without flow collections every collection is a
    block one, and libyaml opens a block collection only at a column greater
    than the enclosing one's (a sequence directly under a mapping key may
    share its column, once): the depth is at most twice the longest line.
    """
    if "&" in text or "*" in text or "[" in text or "{" in text:
        return False
    i = text.find("!")
    while i >= 0:
        if not (allow_omap and text.startswith("!!omap", i) and text[i + 6 : i + 7] in _BLANKZ):
            return False
        i = text.find("!", i + 2)
    # Composing first must not cost more than the scan would allow either: in
    # block-only YAML every scalar is the root, a key before ':' or a value
    # after ':', '-' or '?', and every collection holds at least one node, so
    # this bounds the node count before anything is built (a megabyte of
    # "- 1" lines would otherwise take seconds and hundreds of MB to compose).
    indicators = text.count(":") * 2 + text.count("-") + text.count("?") + 1
    if 2 * indicators > MAX_EXPANDED_NODES:
        return False
    longest = max(map(len, text.split("\n")))
    return 2 * (longest + 2) <= _FAST_MAX_DEPTH


def _tree_within_bounds(root: yaml.Node, allow_omap: bool) -> bool:
    """What :func:`_scan_events` checks, on a tree composed without anchors or
    aliases: node count, depth, and no tag but implicit ones and ``!!omap`` on
    a sequence.  (Other resolved tags such as ``<<`` are not the scan's to
    refuse, but sending them the scanned way changes nothing: _check_node
    refuses them there.)"""
    pyyaml = _yaml()
    count = 0
    stack: list[tuple[yaml.Node, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_EXPANDED_NODES:
            return False
        tag = node.tag
        if tag not in _IMPLICIT_TAGS and not (
            allow_omap and tag == _OMAP and isinstance(node, pyyaml.SequenceNode)
        ):
            return False
        if isinstance(node, pyyaml.SequenceNode):
            if depth >= MAX_DEPTH:
                return False
            stack.extend((c, depth + 1) for c in node.value)
        elif isinstance(node, pyyaml.MappingNode):
            if depth >= MAX_DEPTH:
                return False
            for k, v in node.value:
                stack.append((k, depth + 1))
                stack.append((v, depth + 1))
    return True


def _load_unscanned(text: str, where: str, allow_omap: bool) -> Any:
    """Load without the event scan, or raise :class:`_ScanNeeded`."""
    if not _scan_needless(text, allow_omap):
        raise _ScanNeeded
    loader = _safe_loader()(text)
    try:
        try:
            node = loader.get_single_node()
        except Exception:  # whatever it is, the scanned way says it
            raise _ScanNeeded from None
        if node is None:
            return None
        if not _tree_within_bounds(node, allow_omap):
            raise _ScanNeeded
        _check_node(node, where, allow_omap)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _scan_events(text: str, where: str, allow_omap: bool) -> None:
    """Refuse tags, deep nesting and alias expansion beyond the bounds.

    Works on the parser's event stream (libyaml's parser does not recurse) and
    stops at the first violation, so a billion-laughs document or a hundred
    thousand ``[`` cost microseconds, not minutes.
    """
    expanded = 0
    stack: list[tuple[str | None, int]] = []  # open collections: (anchor, expanded at start)
    anchors: dict[str, int] = {}  # finished anchor -> nodes it expands to
    open_anchors: set[str] = set()
    pyyaml = _yaml()
    for event in pyyaml.parse(text, Loader=_safe_loader()):
        mark = event.start_mark
        at = f" (line {mark.line + 1})" if mark is not None else ""
        if isinstance(event, pyyaml.DocumentStartEvent) and event.tags:
            raise DescriptorError(f"{where}: YAML %TAG directives are not allowed{at}")
        if isinstance(event, pyyaml.AliasEvent):
            name = str(event.anchor)
            if name in open_anchors:
                raise DescriptorError(f"{where}: recursive YAML alias{at}")
            if name not in anchors:
                raise DescriptorError(f"{where}: YAML alias to an undefined anchor{at}")
            expanded += anchors[name]
        elif isinstance(event, pyyaml.NodeEvent):
            tag = getattr(event, "tag", None)
            if tag is not None and not (
                allow_omap and tag == _OMAP and isinstance(event, pyyaml.SequenceStartEvent)
            ):
                raise DescriptorError(f"{where}: YAML tag {tag!r} is not allowed{at}")
            anchor = event.anchor
            if anchor is not None and (anchor in anchors or anchor in open_anchors):
                raise DescriptorError(f"{where}: YAML anchor defined twice{at}")
            expanded += 1
            if isinstance(event, pyyaml.CollectionStartEvent):
                if len(stack) >= MAX_DEPTH:
                    raise DescriptorError(
                        f"{where}: YAML nested deeper than {MAX_DEPTH} levels{at}"
                    )
                stack.append((anchor, expanded - 1))
                if anchor is not None:
                    open_anchors.add(anchor)
            elif anchor is not None:
                anchors[anchor] = 1
        elif isinstance(event, pyyaml.CollectionEndEvent):
            anchor, before = stack.pop()
            if anchor is not None:
                open_anchors.discard(anchor)
                anchors[anchor] = expanded - before
        if expanded > MAX_EXPANDED_NODES:
            raise DescriptorError(
                f"{where}: YAML has more than {MAX_EXPANDED_NODES} nodes "
                f"(counting each alias as what it expands to){at}"
            )


def _check_node(root: yaml.Node, where: str, allow_omap: bool) -> None:
    """Check resolved tags, scalar values and duplicate mapping keys.

    The graph is already bounded by :func:`_scan_events`; shared (aliased)
    nodes are visited once.  Scalars that the constructor would fail on
    (``2020-13-45``, an integer of 5000 digits) are refused here, where the
    key they belong to is known.
    """
    pyyaml = _yaml()
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    constructor = pyyaml.constructor.SafeConstructor()
    while stack:
        node, key = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        at = f"key {printable(key, quote=True, limit=60)}" if key else f"line {_line(node)}"
        tag = node.tag
        if tag not in _IMPLICIT_TAGS and not (allow_omap and tag == _OMAP):
            raise DescriptorError(f"{where}: YAML tag {tag!r} is not allowed ({at})")
        if isinstance(node, pyyaml.ScalarNode):
            if tag in (_STANDARD + "int", _STANDARD + "timestamp", _STANDARD + "float"):
                try:
                    constructor.construct_object(node, deep=True)
                except (ValueError, OverflowError, pyyaml.YAMLError) as e:
                    problem = (str(e).splitlines() or [""])[0][:80]
                    raise DescriptorError(f"{where}: invalid value for {at}: {problem}") from None
        elif isinstance(node, pyyaml.SequenceNode):
            stack.extend((c, key) for c in node.value)
        elif isinstance(node, pyyaml.MappingNode):
            keys: set[tuple[str, str]] = set()
            for k, v in node.value:
                child = key
                if isinstance(k, pyyaml.ScalarNode):
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
