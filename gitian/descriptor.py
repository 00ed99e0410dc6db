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
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from gitian.errors import DescriptorError

try:  # the C loader is much faster; fall back silently when libyaml is absent
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover - depends on the PyYAML build
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

MAX_DESCRIPTOR_BYTES = 4 * 1024 * 1024
MAX_EXPANDED_NODES = 200_000
MAX_LIST_ITEMS = 10_000

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
DPKG_ARCH = re.compile(r"[a-z0-9][a-z0-9\-]*")
# A commit: a hex id or a ref/tag name as git check-ref-format would accept it
# (no leading '-', no '..', no control or special characters).
COMMIT = re.compile(r"(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[A-Za-z0-9][A-Za-z0-9._/+\-]*(?<![./])")
DIGEST = re.compile(r"([a-z0-9._/\-]+@)?sha256:[0-9a-f]{64}")
URL_SCHEMES = ("https", "http", "git", "ssh", "git+ssh", "ssh+git", "file")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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
            url = _url(urls[r.dir], "--url") if r.dir in urls else r.url
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
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_DESCRIPTOR_BYTES + 1)
    except FileNotFoundError:
        raise DescriptorError(f"{p}: no such descriptor") from None
    except IsADirectoryError:
        raise DescriptorError(f"{p}: is a directory, not a descriptor") from None
    except OSError as e:
        raise DescriptorError(f"{p}: cannot read: {e.strerror}") from None
    return parse(raw, p)


def parse(raw: bytes, path: Path | str = "<descriptor>") -> Descriptor:
    """Parse descriptor bytes.  Errors name the file and the key."""
    p = Path(path)
    where = p.name
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
        raise DescriptorError(f"{where}: {e.message}", hint=e.hint) from None


def safe_yaml(raw: bytes, where: str, *, allow_omap: bool = False) -> Any:
    """Load YAML safely: no tags (except ``!!omap`` when allowed), bounded aliases.

    Raises :class:`DescriptorError`; callers re-wrap it for other kinds of file.
    """
    if b"\x00" in raw:
        raise DescriptorError(f"{where}: binary data (NUL byte), not YAML")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DescriptorError(f"{where}: not UTF-8 text (byte {e.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    loader = _SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_node(node, where, allow_omap)
        _refuse_explicit_tags(text, where, allow_omap)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise DescriptorError(f"{where}: invalid YAML{at}: {problem}") from None
    except RecursionError:
        raise DescriptorError(f"{where}: YAML nested too deeply") from None
    finally:
        loader.dispose()


_STANDARD = "tag:yaml.org,2002:"
_IMPLICIT_TAGS = {
    _STANDARD + t for t in ("str", "int", "float", "bool", "null", "timestamp", "seq", "map")
}


def _check_node(root: yaml.Node, where: str, allow_omap: bool) -> None:
    """Refuse explicit tags and alias expansion beyond a bound (billion laughs)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    onpath: set[int] = set()
    while stack:
        node, done = stack.pop()
        nid = id(node)
        if done:
            onpath.discard(nid)
            total = 1
            if isinstance(node, yaml.SequenceNode):
                total += sum(sizes[id(c)] for c in node.value)
            elif isinstance(node, yaml.MappingNode):
                total += sum(sizes[id(k)] + sizes[id(v)] for k, v in node.value)
            if total > MAX_EXPANDED_NODES:
                raise DescriptorError(
                    f"{where}: YAML expands to more than {MAX_EXPANDED_NODES} nodes (alias bomb?)"
                )
            sizes[nid] = total
            continue
        if nid in sizes:
            continue
        if nid in onpath:
            raise DescriptorError(f"{where}: recursive YAML alias")
        tag = node.tag
        if tag not in _IMPLICIT_TAGS and not (allow_omap and tag == _STANDARD + "omap"):
            raise DescriptorError(f"{where}: YAML tag {tag!r} is not allowed")
        if isinstance(node, yaml.ScalarNode):
            sizes[nid] = 1
            continue
        onpath.add(nid)
        stack.append((node, True))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((c, False) for c in node.value)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack.append((k, False))
                stack.append((v, False))


def _refuse_explicit_tags(text: str, where: str, allow_omap: bool) -> None:
    # Nodes do not remember whether a tag was written out (``!!str x`` and
    # ``x`` give the same node), so look at the parser's events.
    for event in yaml.parse(text, Loader=_SafeLoader):
        tag = getattr(event, "tag", None)
        if tag is None or tag == "!":
            continue
        if allow_omap and tag == _STANDARD + "omap" and isinstance(event, yaml.SequenceStartEvent):
            continue
        raise DescriptorError(f"{where}: YAML tag {tag!r} is not allowed")


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
        raise DescriptorError(f"{key!r} must be a string, not {_kind(v)}")
    return v


def _no_control(v: str, key: str, *, allow_newlines: bool = False) -> str:
    bad = CONTROL.search(v.replace("\n", "").replace("\t", "") if allow_newlines else v)
    if bad:
        raise DescriptorError(f"{key!r} contains a control character: {_printable(v)}")
    return v


def _sanitary(v: Any, key: str) -> str:
    s = _str(v, key)
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


def _url(v: Any, key: str) -> str:
    s = _str(v, key)
    _no_control(s, key)
    if not s or s.startswith("-"):
        raise DescriptorError(f"{key!r} value {_printable(s)} is not a repository URL")
    if " " in s:
        raise DescriptorError(f"{key!r} value {_printable(s)} contains a space")
    m = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*)::", s)
    if m:
        raise DescriptorError(
            f"{key!r} uses the git transport {m.group(1)!r}::, which runs programs; refused"
        )
    m = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*)://", s)
    if m:
        if m.group(1).lower() not in URL_SCHEMES:
            raise DescriptorError(
                f"{key!r} URL scheme {m.group(1)!r} is not allowed "
                f"(allowed: {', '.join(URL_SCHEMES)})"
            )
        host = s[m.end() :]
        if host.startswith("-"):
            raise DescriptorError(f"{key!r} host in {_printable(s)} starts with '-'")
        return s
    # scp-like user@host:path, or a local path
    if ":" in s.split("/", 1)[0] and s.split(":", 1)[0].split("@")[-1].startswith("-"):
        raise DescriptorError(f"{key!r} host in {_printable(s)} starts with '-'")
    return s


def _reference_datetime(v: Any) -> str:
    key = "reference_datetime"
    if isinstance(v, _dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(_dt.UTC).replace(tzinfo=None)
        return str(v.strftime("%Y-%m-%d %H:%M:%S"))
    if isinstance(v, _dt.date):
        return str(v.strftime("%Y-%m-%d 00:00:00"))
    s = _str(v, key)
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", s):
        raise DescriptorError(f"{key!r} must look like 'YYYY-MM-DD HH:MM:SS', got {_printable(s)}")
    try:
        _dt.datetime.strptime(s, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise DescriptorError(f"{key!r} is not a real date and time: {_printable(s)}") from None
    return s


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
            raise DescriptorError(f"top-level key {k!r} is not a string")

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
        if not re.match(r"deb(-src)? ", source):
            raise DescriptorError(f"{where}.source must be an apt line starting with 'deb '")
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
        if not pth.startswith("/") or ".." in pth.split("/") or " " in pth:
            raise DescriptorError(f"{where}.path must be an absolute path without '..' or spaces")
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
