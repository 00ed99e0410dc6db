"""The build descriptor, parsed once and validated into frozen dataclasses.

Everything a descriptor says may end up on a command line, in a path or in a
script, and descriptors are written by other people.  So this module refuses,
with one line naming the key, anything that is not of the expected shape
before any other work starts: wrong types, unsafe names, option-like values,
git transports that run programs, YAML tags and alias bombs.  Past this module
no code sees the raw YAML.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from gitian.errors import DescriptorError

try:  # the C loader is much faster; fall back silently when libyaml is absent
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover - depends on the PyYAML build
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

MAX_DESCRIPTOR_BYTES = 4 * 1024 * 1024
# Bounds on what the YAML may expand to, checked on the parser's event stream
# before any node is built: alias bombs and deep nesting are refused in
# milliseconds, and the C composer (which recurses without a limit and would
# crash the interpreter on ``[[[[...``) never sees more than MAX_DEPTH levels.
MAX_EXPANDED_NODES = 50_000
MAX_DEPTH = 64
MAX_LIST_ITEMS = 10_000
MAX_NAME_LENGTH = 200  # <name>-build.assert.sig must fit in a file name
MAX_URL_LENGTH = 2048

SANITARY = re.compile(r"[A-Za-z0-9_.\-]+")
ARCHITECTURES: dict[str, tuple[int, str]] = {
    # arch -> (bits, setarch personality)
    "i386": (32, "i386"),
    "amd64": (64, "x86_64"),
    "linux64": (64, "linux64"),
}
DISTROS = ("ubuntu", "debian")
# Debian package names, optionally with :arch, =version or /release.
PACKAGE = re.compile(
    r"[a-z0-9][a-z0-9+.\-]*(:[a-z0-9\-]+)?(=[A-Za-z0-9.+~:\-]+|/[A-Za-z0-9.+~\-]+)?"
)
ALTERNATIVE = re.compile(r"[A-Za-z0-9][A-Za-z0-9+._\-]*")
ALTERNATIVE_PATH = re.compile(r"(/[A-Za-z0-9+._\-]+)+")
DPKG_ARCH = re.compile(r"[a-z0-9][a-z0-9\-]*")
# A commit: a hex id or a ref/tag name as git check-ref-format would accept it
# (no leading '-', no '..', no component starting with '.', no control or
# special characters such as ~ ^ : ? * [ \ @{).
COMMIT = re.compile(
    r"(?!-)(?!.*\.\.)(?!.*//)(?!.*/\.)(?!.*@\{)[A-Za-z0-9][A-Za-z0-9._/+\-]*(?<![./])"
)
DIGEST = re.compile(r"([a-z0-9._/\-]+@)?sha256:[0-9a-f]{64}")
URL_SCHEMES = ("https", "http", "git", "ssh", "git+ssh", "ssh+git", "file")
# Schemes that name a path on this machine: only from the command line (--url).
LOCAL_SCHEMES = ("file",)
# Characters no git URL needs and a shell would act on.
URL_FORBIDDEN = frozenset(" \t`$;|&<>(){}\\\"'*?!#^")
URL_HOST = re.compile(r"[A-Za-z0-9._~%:\[\]\-]*")
# An apt source line: "deb[-src] [options] URI SUITE [COMPONENT...]", no shell
# metacharacters (it is written into the target's sources.list).
APT_SOURCE = re.compile(r"deb(-src)? (\[[A-Za-z0-9=,._:/+\- ]+\] )?[A-Za-z0-9:/._~+%@=,\- ]+")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Anything a terminal could act on or that would break a message's one line:
# C0 and C1 controls, DEL, line/paragraph separators and bidirectional overrides.
# (Compiled on first use, by oneline(); compiling it costs gverify's start-up
# several milliseconds, and most messages are printable as they are.)
_UNPRINTABLE = (
    r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)


@functools.cache
def _unprintable() -> re.Pattern[str]:
    return re.compile(_UNPRINTABLE)


def __getattr__(name: str) -> Any:
    if name == "UNPRINTABLE":  # the compiled pattern, as before
        return _unprintable()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def oneline(text: str) -> str:
    """``text`` with every control or layout character shown as an escape.

    Messages built from what other people wrote (file names, keys, values,
    parser problems) go through this, so they stay on one line and can never
    move a terminal's cursor or change its colours.
    """
    if text.isprintable():
        return text
    # Every character Python does not call printable: C0/C1 controls, DEL,
    # format characters (bidi overrides, zero-width), separators other than
    # the space, unassigned and private code points, lone surrogates.
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    o = ord(ch)
    if o < 0x100:
        return f"\\x{o:02x}"
    return f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


@dataclass(frozen=True)
class Remote:
    url: str
    dir: str
    commit: str | None = None


@dataclass(frozen=True)
class Repository:
    source: str
    distribution: str
    packages: tuple[str, ...]


@dataclass(frozen=True)
class Alternative:
    package: str
    path: str


@dataclass(frozen=True)
class Descriptor:
    """A validated descriptor.  ``raw`` is the file's bytes (hashed into the in_manifest)."""

    path: Path
    raw: bytes = field(repr=False)
    name: str
    distro: str
    suites: tuple[str, ...]
    architectures: tuple[str, ...]
    packages: tuple[str, ...] = ()
    reference_datetime: str | None = None
    remotes: tuple[Remote, ...] = ()
    files: tuple[str, ...] = ()
    script: str = ""
    enable_cache: bool = False
    sudo: bool = False
    multiarch: tuple[str, ...] = ()
    repositories: tuple[Repository, ...] = ()
    alternatives: tuple[Alternative, ...] = ()
    docker_image_digests: tuple[str, ...] = ()
    optionals: Any = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    def with_overrides(
        self, commits: Mapping[str, str] | None = None, urls: Mapping[str, str] | None = None
    ) -> Descriptor:
        """Apply gbuild's ``--commit dir=hash`` and ``--url dir=url`` (validated like the file)."""
        commits = dict(commits or {})
        urls = dict(urls or {})
        dirs = {r.dir for r in self.remotes}
        for opt, given in (("--commit", commits), ("--url", urls)):
            for d in given:
                if d not in dirs:
                    raise DescriptorError(f"{opt}: no remote with dir {d!r} in the descriptor")
        remotes = []
        for r in self.remotes:
            url = _url(urls[r.dir], "--url", local_ok=True) if r.dir in urls else r.url
            commit = _commit(commits[r.dir], "--commit") if r.dir in commits else r.commit
            remotes.append(replace(r, url=url, commit=commit))
        return replace(self, remotes=tuple(remotes))

    def bits(self, arch: str) -> int:
        return ARCHITECTURES[arch][0]

    def setarch(self, arch: str) -> str:
        return ARCHITECTURES[arch][1]


# --------------------------------------------------------------------------
# loading


def load(path: str | Path) -> Descriptor:
    """Read, parse and validate the descriptor at ``path``."""
    p = Path(path)
    shown = oneline(str(p))
    try:
        # O_NONBLOCK: a FIFO given as the descriptor must not hang us.
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise DescriptorError(f"{shown}: not a regular file")
            raw = f.read(MAX_DESCRIPTOR_BYTES + 1)
    except FileNotFoundError:
        raise DescriptorError(f"{shown}: no such descriptor") from None
    except IsADirectoryError:
        raise DescriptorError(f"{shown}: is a directory, not a descriptor") from None
    except OSError as e:
        raise DescriptorError(f"{shown}: cannot read: {e.strerror}") from None
    return parse(raw, p)


def parse(raw: bytes, path: Path | str = "<descriptor>") -> Descriptor:
    """Parse descriptor bytes.  Errors are one line naming the file and the key."""
    p = Path(path)
    where = oneline(p.name)
    if len(raw) > MAX_DESCRIPTOR_BYTES:
        raise DescriptorError(f"{where}: larger than {MAX_DESCRIPTOR_BYTES} bytes")
    doc = safe_yaml(raw, where)
    if doc is None:
        raise DescriptorError(f"{where}: empty descriptor")
    if not isinstance(doc, dict):
        raise DescriptorError(f"{where}: a descriptor must be a mapping, not {_kind(doc)}")
    try:
        return _validate(doc, raw, p)
    except DescriptorError as e:
        raise DescriptorError(oneline(f"{where}: {e.message}"), hint=e.hint) from None


def safe_yaml(raw: bytes, where: str, *, allow_omap: bool = False) -> Any:
    """Load YAML safely: no tags (except ``!!omap`` when allowed), bounded aliases.

    Raises :class:`DescriptorError` with a one-line message starting with
    ``where``; callers re-wrap it for other kinds of file.  Time and memory
    are bounded by the input's size: the event stream is checked for tags,
    nesting depth and alias expansion before a single node is built.
    """
    where = oneline(where)
    if b"\x00" in raw:
        raise DescriptorError(f"{where}: binary data (NUL byte), not YAML")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DescriptorError(f"{where}: not UTF-8 text (byte {e.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        try:
            return _load_unscanned(text, where, allow_omap)
        except _ScanNeeded:
            pass
        _scan_events(text, where, allow_omap)
        loader = _SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_node(node, where, allow_omap)
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
        raise DescriptorError(oneline(f"{where}: invalid YAML{at}: {problem}")) from None
    except (ValueError, OverflowError) as e:
        # The constructors: a timestamp like 2020-13-45, an integer with more
        # digits than Python converts, a date out of range.
        first = (str(e).splitlines() or [""])[0][:100]
        raise DescriptorError(oneline(f"{where}: invalid YAML value: {first}")) from None
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
        if not (
            allow_omap and text.startswith("!!omap", i) and text[i + 6 : i + 7] in _BLANKZ
        ):
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
    count = 0
    stack: list[tuple[yaml.Node, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_EXPANDED_NODES:
            return False
        tag = node.tag
        if tag not in _IMPLICIT_TAGS and not (
            allow_omap and tag == _OMAP and isinstance(node, yaml.SequenceNode)
        ):
            return False
        if isinstance(node, yaml.SequenceNode):
            if depth >= MAX_DEPTH:
                return False
            stack.extend((c, depth + 1) for c in node.value)
        elif isinstance(node, yaml.MappingNode):
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
    loader = _SafeLoader(text)
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
    for event in yaml.parse(text, Loader=_SafeLoader):
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
            if tag is not None and not (
                allow_omap and tag == _OMAP and isinstance(event, yaml.SequenceStartEvent)
            ):
                raise DescriptorError(f"{where}: YAML tag {tag!r} is not allowed{at}")
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


def _check_node(root: yaml.Node, where: str, allow_omap: bool) -> None:
    """Check resolved tags, scalar values and duplicate mapping keys.

    The graph is already bounded by :func:`_scan_events`; shared (aliased)
    nodes are visited once.  Scalars that the constructor would fail on
    (``2020-13-45``, an integer of 5000 digits) are refused here, where the
    key they belong to is known.
    """
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    constructor = SafeConstructor()
    while stack:
        node, key = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        at = f"key {_printable(key)}" if key else f"line {_line(node)}"
        tag = node.tag
        if tag not in _IMPLICIT_TAGS and not (allow_omap and tag == _OMAP):
            raise DescriptorError(f"{where}: YAML tag {tag!r} is not allowed ({at})")
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
                        raise DescriptorError(
                            f"{where}: key {_printable(str(k.value))} appears twice "
                            f"in one mapping (line {_line(k)})"
                        )
                    keys.add(ident)
                    name = str(k.value)[:60]
                    child = (f"{key}.{name}" if key else name)[:120]
                stack.append((k, key))
                stack.append((v, child))


def _line(node: yaml.Node) -> int:
    mark = node.start_mark
    return int(mark.line) + 1 if mark is not None else 0


# --------------------------------------------------------------------------
# validation helpers; each raises DescriptorError naming the key


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return type(v).__name__


def _printable(v: str) -> str:
    """A value shown in an error: escaped, and cut if long."""
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "...'"


def _str(v: Any, key: str) -> str:
    if not isinstance(v, str):
        raise DescriptorError(
            f"{key!r} must be a string, not {_kind(v)}",
            hint="quote the value" if isinstance(v, (int, float, _dt.date)) else None,
        )
    return v


def _no_control(v: str, key: str, *, allow_newlines: bool = False) -> str:
    # C0 and C1 controls, DEL, bidi overrides, zero-width and line separators alike
    if not (v.replace("\n", "").replace("\t", "") if allow_newlines else v).isprintable():
        raise DescriptorError(f"{key!r} contains a control character: {_printable(v)}")
    return v


def _sanitary(v: Any, key: str) -> str:
    s = _str(v, key)
    if len(s) > MAX_NAME_LENGTH:
        raise DescriptorError(f"{key!r} value is longer than {MAX_NAME_LENGTH} characters")
    if not SANITARY.fullmatch(s) or s in (".", "..") or s.startswith(("-", ".")):
        raise DescriptorError(
            f"{key!r} value {_printable(s)} is not sanitary "
            "(only letters, digits, '_', '.', '-'; not starting with '.' or '-')"
        )
    return s


def _list(v: Any, key: str, *, required: bool = False) -> list[Any]:
    if v is None:
        if required:
            raise DescriptorError(f"missing required key {key!r}")
        return []
    if not isinstance(v, list):
        raise DescriptorError(f"{key!r} must be a list, not {_kind(v)}")
    if required and not v:
        raise DescriptorError(f"{key!r} must not be empty")
    if len(v) > MAX_LIST_ITEMS:
        raise DescriptorError(f"{key!r} has more than {MAX_LIST_ITEMS} entries")
    return v


def _mapping(v: Any, key: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise DescriptorError(f"{key} must be a mapping, not {_kind(v)}")
    return v


def _bool(v: Any, key: str) -> bool:
    if v is None:
        return False
    if not isinstance(v, bool):
        raise DescriptorError(f"{key!r} must be true or false, not {_kind(v)}")
    return v


def _package(v: Any, key: str) -> str:
    s = _str(v, key)
    if not PACKAGE.fullmatch(s):
        raise DescriptorError(f"{key!r} entry {_printable(s)} is not a Debian package name")
    return s


def _commit(v: Any, key: str) -> str:
    s = _str(v, key)
    if not COMMIT.fullmatch(s) or s.endswith(".lock") or len(s) > 255:
        raise DescriptorError(f"{key!r} value {_printable(s)} is not a commit, tag or branch name")
    return s


def _url(v: Any, key: str, *, local_ok: bool = False) -> str:
    """A git remote URL that git will not turn into a program run or an option.

    Refused: transports ``<helper>::`` (``ext::`` runs any command, ``fd::``
    reads descriptors), schemes other than :data:`URL_SCHEMES`, anything that
    starts with ``-`` (read as an option by git or ssh, also as a user or host
    name: ``ssh://-oProxyCommand=...``), shell metacharacters, whitespace and
    control characters.  A path on this machine (absolute, ``file://``, or
    relative and leaving ``inputs/``) is only accepted from the command line
    (``local_ok``, for ``--url``): a descriptor written by someone else must
    not make us read the builder's own repositories into the build.
    """
    s = _str(v, key)
    if not s:
        raise DescriptorError(f"{key!r} is empty")
    if len(s) > MAX_URL_LENGTH:
        raise DescriptorError(f"{key!r} is longer than {MAX_URL_LENGTH} characters")
    _no_control(s, key)
    m = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*)::", s)
    if m:
        raise DescriptorError(
            f"{key!r} uses the git transport {m.group(1)!r}::, which runs programs; refused"
        )
    if s.startswith("-"):
        raise DescriptorError(f"{key!r} value {_printable(s)} starts with '-' (read as an option)")
    bad = sorted(set(s) & URL_FORBIDDEN)
    if bad:
        raise DescriptorError(
            f"{key!r} value {_printable(s)} contains {_printable(''.join(bad))}, "
            "which no repository URL needs"
        )
    m = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*)://", s)
    if m:
        scheme = m.group(1).lower()
        if scheme not in URL_SCHEMES:
            raise DescriptorError(
                f"{key!r} URL scheme {m.group(1)!r} is not allowed "
                f"(allowed: {', '.join(URL_SCHEMES)})"
            )
        if scheme in LOCAL_SCHEMES:
            if not local_ok:
                raise _local_refused(s, key)
            return s
        authority = s[m.end() :].split("/", 1)[0]
        user, _, host = authority.rpartition("@")
        host = host.lstrip("[")
        if not host:
            raise DescriptorError(f"{key!r} URL {_printable(s)} has no host")
        if host.startswith("-") or user.startswith("-"):
            raise DescriptorError(
                f"{key!r} host or user in {_printable(s)} starts with '-' (read as an option)"
            )
        if not URL_HOST.fullmatch(host):
            raise DescriptorError(f"{key!r} host in {_printable(s)} is not a host name")
        return s
    head = s.split("/", 1)[0]
    if ":" in head:
        # scp-like [user@]host:path, which git hands to ssh
        user, _, host = head.split(":", 1)[0].rpartition("@")
        host = host.lstrip("[")
        if not host or host.startswith("-") or user.startswith("-"):
            raise DescriptorError(
                f"{key!r} host or user in {_printable(s)} is empty or starts with '-'"
            )
        if not URL_HOST.fullmatch(host):
            raise DescriptorError(f"{key!r} host in {_printable(s)} is not a host name")
        return s
    # A local path.  git runs in inputs/<dir>, so a relative path is taken
    # from there; from a descriptor it must stay inside inputs/.
    if not local_ok:
        parts = [x for x in s.split("/") if x not in ("", ".")]
        depth = 1  # inputs/<dir>
        for part in parts:
            depth += -1 if part == ".." else 1
            if depth < 0:
                raise _local_refused(s, key)
        if s.startswith("/"):
            raise _local_refused(s, key)
    return s


def _local_refused(s: str, key: str) -> DescriptorError:
    return DescriptorError(
        f"{key!r} value {_printable(s)} is a path on this machine outside inputs/; "
        "a descriptor may not name one",
        hint="to build from a local repository, pass --url DIR=PATH to gbuild",
    )


def _reference_datetime(v: Any) -> str:
    """``YYYY-MM-DD HH:MM:SS`` (UTC), from a string or an unquoted YAML timestamp."""
    key = "reference_datetime"
    if isinstance(v, _dt.datetime):
        if v.tzinfo is not None:
            try:
                v = v.astimezone(_dt.UTC).replace(tzinfo=None)
            except (OverflowError, ValueError):
                raise DescriptorError(f"{key!r} is out of range") from None
        when = v.replace(microsecond=0)
    elif isinstance(v, _dt.date):
        when = _dt.datetime(v.year, v.month, v.day)
    else:
        s = _str(v, key)
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", s, flags=re.ASCII):
            raise DescriptorError(
                f"{key!r} must look like 'YYYY-MM-DD HH:MM:SS', got {_printable(s)}"
            )
        try:
            when = _dt.datetime.strptime(s, "%Y-%m-%d %H:%M:%S")
        except ValueError:
            raise DescriptorError(f"{key!r} is not a real date and time: {_printable(s)}") from None
    if not 1970 <= when.year <= 9999:
        raise DescriptorError(f"{key!r} must be between 1970 and 9999, got year {when.year}")
    return str(when.strftime("%Y-%m-%d %H:%M:%S"))


def _optionals(v: Any, key: str = "optionals", depth: int = 0) -> Any:
    """Optionals are copied into the assert: plain YAML data only."""
    if depth > 50:
        raise DescriptorError(f"{key!r} is nested too deeply")
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (_dt.date, _dt.datetime)):
        return v
    if isinstance(v, list):
        return [_optionals(x, key, depth + 1) for x in v]
    if isinstance(v, dict):
        return {k: _optionals(x, key, depth + 1) for k, x in v.items()}
    raise DescriptorError(f"{key!r} holds an unsupported value ({_kind(v)})")


def _validate(doc: dict[Any, Any], raw: bytes, path: Path) -> Descriptor:
    for k in doc:
        if not isinstance(k, str):
            raise DescriptorError(f"top-level key {_printable(str(k))} is not a string")

    if "name" not in doc:
        raise DescriptorError("missing required key 'name'")
    name = _sanitary(doc["name"], "name")

    distro = doc.get("distro", "ubuntu")
    distro = _str(distro, "distro") if distro is not None else "ubuntu"
    if distro not in DISTROS:
        raise DescriptorError(
            f"'distro' must be one of {', '.join(DISTROS)}, not {_printable(distro)}"
        )

    suites = tuple(
        _sanitary(s, "suites") for s in _list(doc.get("suites"), "suites", required=True)
    )
    archs = []
    for a in _list(doc.get("architectures"), "architectures", required=True):
        a = _str(a, "architectures")
        if a not in ARCHITECTURES:
            raise DescriptorError(
                f"'architectures' entry {_printable(a)} is not one of {', '.join(ARCHITECTURES)}"
            )
        archs.append(a)

    packages = tuple(_package(p, "packages") for p in _list(doc.get("packages"), "packages"))

    remotes = []
    seen_dirs: set[str] = set()
    for i, r in enumerate(_list(doc.get("remotes"), "remotes")):
        where = f"remotes[{i}]"
        r = _mapping(r, where)
        if "url" not in r:
            raise DescriptorError(f"{where} is missing 'url'")
        if "dir" not in r:
            raise DescriptorError(f"{where} is missing 'dir'")
        d = _sanitary(r["dir"], f"{where}.dir")
        if d in seen_dirs:
            raise DescriptorError(f"{where}.dir {d!r} is used by two remotes")
        seen_dirs.add(d)
        commit = r.get("commit")
        remotes.append(
            Remote(
                url=_url(r["url"], f"{where}.url"),
                dir=d,
                commit=None if commit is None else _commit(commit, f"{where}.commit"),
            )
        )

    ref = doc.get("reference_datetime")
    reference = None if ref is None else _reference_datetime(ref)
    if reference is None and not remotes:
        raise DescriptorError("missing 'reference_datetime' (required when there are no remotes)")

    files = []
    for f in _list(doc.get("files"), "files"):
        files.append(_sanitary(f, "files"))

    script = doc.get("script", "")
    script = "" if script is None else _str(script, "script")
    if "\x00" in script:
        raise DescriptorError("'script' contains a NUL byte")

    multiarch = []
    for a in _list(doc.get("multiarch"), "multiarch"):
        a = _str(a, "multiarch")
        if not DPKG_ARCH.fullmatch(a):
            raise DescriptorError(f"'multiarch' entry {_printable(a)} is not a dpkg architecture")
        multiarch.append(a)

    repositories = []
    for i, r in enumerate(_list(doc.get("repositories"), "repositories")):
        where = f"repositories[{i}]"
        r = _mapping(r, where)
        for k in ("source", "distribution"):
            if k not in r:
                raise DescriptorError(f"{where} is missing {k!r}")
        source = _no_control(_str(r["source"], f"{where}.source"), f"{where}.source")
        if not APT_SOURCE.fullmatch(source):
            raise DescriptorError(
                f"{where}.source {_printable(source)} is not an apt line "
                "('deb [options] URI SUITE COMPONENT...', no shell metacharacters)"
            )
        repositories.append(
            Repository(
                source=source,
                distribution=_sanitary(r["distribution"], f"{where}.distribution"),
                packages=tuple(
                    _package(p, f"{where}.packages")
                    for p in _list(r.get("packages"), f"{where}.packages")
                ),
            )
        )

    alternatives = []
    for i, a in enumerate(_list(doc.get("alternatives"), "alternatives")):
        where = f"alternatives[{i}]"
        a = _mapping(a, where)
        for k in ("package", "path"):
            if k not in a:
                raise DescriptorError(f"{where} is missing {k!r}")
        pth = _no_control(_str(a["path"], f"{where}.path"), f"{where}.path")
        if not ALTERNATIVE_PATH.fullmatch(pth) or set(pth.split("/")) & {".", ".."}:
            raise DescriptorError(
                f"{where}.path {_printable(pth)} must be an absolute path of plain names "
                "(letters, digits, '+._-'; no '.' or '..')"
            )
        alt = _str(a["package"], f"{where}.package")
        if not ALTERNATIVE.fullmatch(alt):
            raise DescriptorError(f"{where}.package {_printable(alt)} is not an alternatives name")
        alternatives.append(Alternative(package=alt, path=pth))

    digests = []
    for d in _list(doc.get("docker_image_digests"), "docker_image_digests"):
        d = _str(d, "docker_image_digests")
        if not DIGEST.fullmatch(d):
            raise DescriptorError(
                f"'docker_image_digests' entry {_printable(d)} is not a sha256:<64 hex> digest"
            )
        digests.append(d)
    if digests and len(digests) != len(suites):
        raise DescriptorError(
            f"'docker_image_digests' has {len(digests)} entries but 'suites' has {len(suites)}"
        )

    return Descriptor(
        path=path,
        raw=raw,
        name=name,
        distro=distro,
        suites=suites,
        architectures=tuple(archs),
        packages=packages,
        reference_datetime=reference,
        remotes=tuple(remotes),
        files=tuple(files),
        script=script,
        enable_cache=_bool(doc.get("enable_cache"), "enable_cache"),
        sudo=_bool(doc.get("sudo"), "sudo"),
        multiarch=tuple(multiarch),
        repositories=tuple(repositories),
        alternatives=tuple(alternatives),
        docker_image_digests=tuple(digests),
        optionals=_optionals(doc.get("optionals")),
    )


def parse_assignments(value: str | Sequence[str] | None, option: str) -> dict[str, str]:
    """Parse gbuild's ``dir=value,dir=value`` options (may be given several times)."""
    out: dict[str, str] = {}
    if not value:
        return out
    items = [value] if isinstance(value, str) else list(value)
    for item in items:
        for part in item.split(","):
            if not part:
                continue
            d, sep, v = part.partition("=")
            if not sep or not d or not v:
                raise DescriptorError(f"{option}: expected dir=value, got {_printable(part)}")
            out[_sanitary(d, option)] = str(v)
    return out
