"""The build descriptor, parsed once and validated into frozen dataclasses.

Everything a descriptor says may end up on a command line, in a path or in a
script, and descriptors are written by other people.  So this module refuses,
with one line naming the key, anything that is not of the expected shape
before any other work starts: wrong types, unsafe names, option-like values,
git transports that run programs, YAML tags and alias bombs.  Past this module
no code sees the raw YAML.

"""

from __future__ import annotations

import datetime
import difflib
import hashlib
import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gitian.errors import DescriptorError
from gitian.safeyaml import MAX_DEPTH as MAX_DEPTH
from gitian.safeyaml import MAX_EXPANDED_NODES as MAX_EXPANDED_NODES
from gitian.safeyaml import safe_yaml as safe_yaml
from gitian.text import printable

MAX_DESCRIPTOR_BYTES = 4 * 1024 * 1024
MAX_LIST_ITEMS = 10_000
MAX_NAME_LENGTH = 200  # <name>-build.assert.sig must fit in a file name
MAX_URL_LENGTH = 2048
#: How alike (difflib's ratio) an unknown key must be to a descriptor key to be
#: refused as a typo of it: catches ``pakages``, ``file``, ``remote``,
#: ``architecture``, ``refrence_datetime``, ``scrip``, ``Name``; leaves keys of
#: a project's own (``version``, ``description``, ``notes``, ``sources``) alone.
TYPO_CUTOFF = 0.8
MAX_IGNORED_SHOWN = 10

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
# A URL's scheme, and a git transport helper ("<helper>::").
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")
_TRANSPORT = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)::")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", re.ASCII)


# --------------------------------------------------------------------------
# the descriptor


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
    #: what the file holds that no key above reads, as one printable line each
    #: (unknown keys: projects carry keys of their own)
    warnings: tuple[str, ...] = field(default=(), compare=False)

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
                    # refused either way: difflib's default cutoff, the suggestion only helps
                    meant = difflib.get_close_matches(d, sorted(dirs), n=1)
                    raise DescriptorError(
                        f"{opt}: no remote with dir {d!r} in the descriptor"
                        + (f" (did you mean {meant[0]!r}?)" if meant else ""),
                        hint="its remotes' dirs: " + (", ".join(sorted(dirs)) or "none"),
                    )
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


def _read(path: str | os.PathLike[str]) -> bytes:
    shown = printable(os.fspath(path))
    try:
        # O_NONBLOCK: a FIFO given as the descriptor must not hang us.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise DescriptorError(f"{shown}: not a regular file")
            return f.read(MAX_DESCRIPTOR_BYTES + 1)
    except FileNotFoundError:
        raise DescriptorError(f"{shown}: no such descriptor") from None
    except IsADirectoryError:
        raise DescriptorError(f"{shown}: is a directory, not a descriptor") from None
    except OSError as e:
        raise DescriptorError(f"{shown}: cannot read: {e.strerror}") from None


def load(path: str | Path) -> Descriptor:
    """Read, parse and validate the descriptor at ``path``."""
    return parse(_read(path), path)


def load_name(path: str | os.PathLike[str]) -> str:
    """Read, parse and validate the descriptor at ``path`` exactly as
    :func:`load` does (the same checks, the same errors), and return its name
    without building the :class:`Descriptor` - all that gverify needs."""
    raw = _read(path)
    return str(_fields(raw, path)["name"])


def parse(raw: bytes, path: Path | str = "<descriptor>") -> Descriptor:
    """Parse descriptor bytes.  Errors are one line naming the file and the key."""
    return Descriptor(path=Path(path), raw=raw, **_fields(raw, path))


def _file_name(path: str | os.PathLike[str]) -> str:
    """What ``pathlib.PurePosixPath(path).name`` is, without pathlib."""
    parts = [p for p in os.fspath(path).split("/") if p not in ("", ".")]
    return parts[-1] if parts else ""


def _fields(raw: bytes, path: str | os.PathLike[str]) -> dict[str, Any]:
    where = printable(_file_name(path))
    if len(raw) > MAX_DESCRIPTOR_BYTES:
        raise DescriptorError(f"{where}: larger than {MAX_DESCRIPTOR_BYTES} bytes")
    doc = safe_yaml(raw, where)
    if doc is None:
        raise DescriptorError(f"{where}: empty descriptor")
    if not isinstance(doc, dict):
        raise DescriptorError(f"{where}: a descriptor must be a mapping, not {_kind(doc)}")
    try:
        fields, ignored = _validate(doc)
    except DescriptorError as e:
        raise DescriptorError(printable(f"{where}: {e.message}"), hint=e.hint) from None
    if ignored:
        fields["warnings"] = (printable(f"{where}: {_ignored(ignored)}"),)
    return fields


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


def _shown(v: str) -> str:
    """A value shown in an error: escaped, quoted, and cut if long."""
    return printable(v, quote=True, limit=60)


def _str(v: Any, key: str) -> str:
    if not isinstance(v, str):
        raise DescriptorError(
            f"{key!r} must be a string, not {_kind(v)}",
            hint="quote the value" if isinstance(v, (int, float, datetime.date)) else None,
        )
    return v


def _no_control(v: str, key: str, *, allow_newlines: bool = False) -> str:
    # C0 and C1 controls, DEL, bidi overrides, zero-width and line separators alike
    if not (v.replace("\n", "").replace("\t", "") if allow_newlines else v).isprintable():
        raise DescriptorError(f"{key!r} contains a control character: {_shown(v)}")
    return v


def _sanitary(v: Any, key: str) -> str:
    s = _str(v, key)
    if len(s) > MAX_NAME_LENGTH:
        raise DescriptorError(f"{key!r} value is longer than {MAX_NAME_LENGTH} characters")
    if not SANITARY.fullmatch(s) or s in (".", "..") or s.startswith(("-", ".")):
        raise DescriptorError(
            f"{key!r} value {_shown(s)} is not sanitary "
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


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[Any, str], str]:
    """A check for a list entry: a string that ``pattern`` matches whole."""

    def check(v: Any, key: str) -> str:
        s = _str(v, key)
        if not pattern.fullmatch(s):
            raise DescriptorError(f"{key!r} entry {_shown(s)} is not {what}")
        return s

    return check


_package = _matching(PACKAGE, "a Debian package name")
_dpkg_arch = _matching(DPKG_ARCH, "a dpkg architecture")
_digest = _matching(DIGEST, "a sha256:<64 hex> digest")


def _commit(v: Any, key: str) -> str:
    s = _str(v, key)
    if not COMMIT.fullmatch(s) or s.endswith(".lock") or len(s) > 255:
        raise DescriptorError(f"{key!r} value {_shown(s)} is not a commit, tag or branch name")
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
    m = _TRANSPORT.match(s)
    if m:
        raise DescriptorError(
            f"{key!r} uses the git transport {m.group(1)!r}::, which runs programs; refused"
        )
    if s.startswith("-"):
        raise DescriptorError(f"{key!r} value {_shown(s)} starts with '-' (read as an option)")
    bad = sorted(set(s) & URL_FORBIDDEN)
    if bad:
        raise DescriptorError(
            f"{key!r} value {_shown(s)} contains {_shown(''.join(bad))}, "
            "which no repository URL needs"
        )
    m = _SCHEME.match(s)
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
            raise DescriptorError(f"{key!r} URL {_shown(s)} has no host")
        if host.startswith("-") or user.startswith("-"):
            raise DescriptorError(
                f"{key!r} host or user in {_shown(s)} starts with '-' (read as an option)"
            )
        if not URL_HOST.fullmatch(host):
            raise DescriptorError(f"{key!r} host in {_shown(s)} is not a host name")
        return s
    head = s.split("/", 1)[0]
    if ":" in head:
        # scp-like [user@]host:path, which git hands to ssh
        user, _, host = head.split(":", 1)[0].rpartition("@")
        host = host.lstrip("[")
        if not host or host.startswith("-") or user.startswith("-"):
            raise DescriptorError(
                f"{key!r} host or user in {_shown(s)} is empty or starts with '-'"
            )
        if not URL_HOST.fullmatch(host):
            raise DescriptorError(f"{key!r} host in {_shown(s)} is not a host name")
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
        f"{key!r} value {_shown(s)} is a path on this machine outside inputs/; "
        "a descriptor may not name one",
        hint="to build from a local repository, pass --url DIR=PATH to gbuild",
    )


def _reference_datetime(v: Any, key: str) -> str:
    """``YYYY-MM-DD HH:MM:SS`` (UTC), from a string or an unquoted YAML timestamp."""
    if isinstance(v, datetime.date):  # an unquoted YAML timestamp
        when: datetime.datetime
        if isinstance(v, datetime.datetime):
            if v.tzinfo is not None:
                try:
                    v = v.astimezone(datetime.UTC).replace(tzinfo=None)
                except (OverflowError, ValueError):
                    raise DescriptorError(f"{key!r} is out of range") from None
            when = v.replace(microsecond=0)
        else:
            when = datetime.datetime(v.year, v.month, v.day)
        year, text = when.year, when.strftime("%Y-%m-%d %H:%M:%S")
    else:
        text = _str(v, key)
        if not _DATETIME.fullmatch(text):
            raise DescriptorError(
                f"{key!r} must look like 'YYYY-MM-DD HH:MM:SS', got {_shown(text)}"
            )
        try:
            year = datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").year
        except ValueError:
            raise DescriptorError(f"{key!r} is not a real date and time: {_shown(text)}") from None
    if not 1970 <= year <= 9999:
        raise DescriptorError(f"{key!r} must be between 1970 and 9999, got year {year}")
    return text


def _optionals(v: Any, key: str = "optionals", depth: int = 0) -> Any:
    """Optionals are copied into the assert: plain YAML data only."""
    if depth > 50:
        raise DescriptorError(f"{key!r} is nested too deeply")
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, datetime.date):
        return v
    if isinstance(v, list):
        return [_optionals(x, key, depth + 1) for x in v]
    if isinstance(v, dict):
        return {k: _optionals(x, key, depth + 1) for k, x in v.items()}
    raise DescriptorError(f"{key!r} holds an unsupported value ({_kind(v)})")


# --------------------------------------------------------------------------
# the checks of single values that the field table below names


def _distro(v: Any, key: str) -> str:
    distro = _str(v, key)
    if distro not in DISTROS:
        raise DescriptorError(f"{key!r} must be one of {', '.join(DISTROS)}, not {_shown(distro)}")
    return distro


def _architecture(v: Any, key: str) -> str:
    a = _str(v, key)
    if a not in ARCHITECTURES:
        raise DescriptorError(f"{key!r} entry {_shown(a)} is not one of {', '.join(ARCHITECTURES)}")
    return a


def _script(v: Any, key: str) -> str:
    script = _str(v, key)
    if "\x00" in script:
        raise DescriptorError(f"{key!r} contains a NUL byte")
    return script


def _apt_source(v: Any, key: str) -> str:
    source = _no_control(_str(v, key), key)
    if not APT_SOURCE.fullmatch(source):
        raise DescriptorError(
            f"{key} {_shown(source)} is not an apt line "
            "('deb [options] URI SUITE COMPONENT...', no shell metacharacters)"
        )
    return source


def _alternative_name(v: Any, key: str) -> str:
    alt = _str(v, key)
    if not ALTERNATIVE.fullmatch(alt):
        raise DescriptorError(f"{key} {_shown(alt)} is not an alternatives name")
    return alt


def _alternative_path(v: Any, key: str) -> str:
    pth = _no_control(_str(v, key), key)
    if not ALTERNATIVE_PATH.fullmatch(pth) or set(pth.split("/")) & {".", ".."}:
        raise DescriptorError(
            f"{key} {_shown(pth)} must be an absolute path of plain names "
            "(letters, digits, '+._-'; no '.' or '..')"
        )
    return pth


# --------------------------------------------------------------------------
# the field table: one entry per key, as mkosi declares its settings

Check = Callable[[Any, str], Any]
"""Turns a key's YAML value into its parsed value: ``check(value, label)``,
raising a :class:`DescriptorError` whose message names ``label``."""


@dataclass(frozen=True)
class Field:
    """One key of a descriptor, or of an entry of one of its lists.

    A ``required`` key that is absent is refused; any other absent or null
    key takes ``default``; every other value goes through ``check``.
    """

    key: str
    check: Check
    required: bool = False
    default: Any = None


@dataclass(frozen=True)
class ListOf:
    """A check for a list whose every item goes through ``item``."""

    item: Check
    #: null or empty is refused
    nonempty: bool = False

    def __call__(self, v: Any, key: str) -> tuple[Any, ...]:
        return tuple(self.item(x, key) for x in _list(v, key, required=self.nonempty))


@dataclass(frozen=True)
class Entries:
    """A check for a list of mappings (``remotes``, ``repositories``,
    ``alternatives``): each entry is checked against ``fields`` and made
    into ``make``; the ``unique`` key may not repeat across entries."""

    fields: tuple[Field, ...]
    make: Callable[..., Any]
    unique: str | None = None

    def __call__(self, v: Any, key: str) -> tuple[Any, ...]:
        out = []
        seen: set[Any] = set()
        for i, entry in enumerate(_list(v, key)):
            where = f"{key}[{i}]"
            values = _check_fields(_mapping(entry, where), self.fields, where)
            if self.unique is not None:
                if values[self.unique] in seen:
                    raise DescriptorError(
                        f"{where}.{self.unique} {values[self.unique]!r} is used by two {key}"
                    )
                seen.add(values[self.unique])
            out.append(self.make(**values))
        return tuple(out)


REMOTE_FIELDS = (
    Field("url", _url, required=True),
    Field("dir", _sanitary, required=True),
    Field("commit", _commit),
)
REPOSITORY_FIELDS = (
    Field("source", _apt_source, required=True),
    Field("distribution", _sanitary, required=True),
    Field("packages", ListOf(_package), default=()),
)
ALTERNATIVE_FIELDS = (
    Field("package", _alternative_name, required=True),
    Field("path", _alternative_path, required=True),
)

#: Every key a descriptor may have (SPEC §2), in the order they are checked.
FIELDS = (
    Field("name", _sanitary, required=True),
    Field("distro", _distro, default="ubuntu"),
    Field("suites", ListOf(_sanitary, nonempty=True), required=True),
    Field("architectures", ListOf(_architecture, nonempty=True), required=True),
    Field("packages", ListOf(_package), default=()),
    Field("remotes", Entries(REMOTE_FIELDS, Remote, unique="dir"), default=()),
    Field("reference_datetime", _reference_datetime),
    Field("files", ListOf(_sanitary), default=()),
    Field("script", _script, default=""),
    Field("enable_cache", _bool, default=False),
    Field("sudo", _bool, default=False),
    Field("multiarch", ListOf(_dpkg_arch), default=()),
    Field("repositories", Entries(REPOSITORY_FIELDS, Repository), default=()),
    Field("alternatives", Entries(ALTERNATIVE_FIELDS, Alternative), default=()),
    Field("docker_image_digests", ListOf(_digest), default=()),
    Field("optionals", _optionals),
)


def _check_fields(
    doc: Mapping[Any, Any], fields: Sequence[Field], where: str | None = None
) -> dict[str, Any]:
    """``doc``'s values for ``fields``, checked in order.  ``where`` is the
    entry's place (``remotes[0]``), None at the top level."""
    out = {}
    for f in fields:
        if f.required and f.key not in doc:
            raise DescriptorError(
                f"missing required key {f.key!r}"
                if where is None
                else f"{where} is missing {f.key!r}"
            )
        v = doc.get(f.key)
        if v is None and not f.required:
            out[f.key] = f.default
        else:
            out[f.key] = f.check(v, f.key if where is None else f"{where}.{f.key}")
    return out


def _unknown_keys(doc: Mapping[Any, Any], fields: Sequence[Field], where: str | None) -> list[str]:
    """The keys of ``doc`` that no field reads, as labels (``remotes[0].branch``).

    A key this close to a known one is a typo: it would be ignored and the
    build fail minutes later (``pakages:`` and then ``gcc: not found``), so it
    is refused, naming the key meant.  Any other is the project's own.
    """
    known = [f.key for f in fields]
    unknown = []
    for k in doc:
        if k in known:
            continue
        label = str(k) if where is None else f"{where}.{k}"
        meant = difflib.get_close_matches(str(k).lower(), known, n=1, cutoff=TYPO_CUTOFF)
        if meant:
            raise DescriptorError(
                f"unknown key {_shown(label)} (did you mean {meant[0]!r}?)",
                hint="correct its spelling (a key of the project's own must not be this "
                "close to a descriptor key)",
            )
        unknown.append(label)
    return unknown


def _ignored(labels: Sequence[str]) -> str:
    """One line naming the keys no field reads."""
    shown = ", ".join(_shown(k) for k in labels[:MAX_IGNORED_SHOWN])
    more = len(labels) - MAX_IGNORED_SHOWN
    if more > 0:
        shown += f" and {more} more"
    return f"unknown key{'s' if len(labels) > 1 else ''} {shown} ignored"


def _validate(doc: dict[Any, Any]) -> tuple[dict[str, Any], list[str]]:
    """The descriptor's fields, checked (:class:`Descriptor`'s keyword
    arguments but ``path``, ``raw`` and ``warnings``), and the keys that no
    field reads."""
    for k in doc:
        if not isinstance(k, str):
            raise DescriptorError(f"top-level key {_shown(str(k))} is not a string")
    # Typos first: a misspelt key is the likely cause of any other error
    # (``remote:`` makes 'reference_datetime' look missing).
    ignored = _unknown_keys(doc, FIELDS, None)
    for f in FIELDS:
        entries = doc.get(f.key)
        if isinstance(f.check, Entries) and isinstance(entries, list):
            for i, entry in enumerate(entries):
                if isinstance(entry, dict):
                    ignored += _unknown_keys(entry, f.check.fields, f"{f.key}[{i}]")
    fields = _check_fields(doc, FIELDS)
    # What one field alone cannot say.
    if fields["reference_datetime"] is None and not fields["remotes"]:
        raise DescriptorError("missing 'reference_datetime' (required when there are no remotes)")
    digests, suites = fields["docker_image_digests"], fields["suites"]
    if digests and len(digests) != len(suites):
        raise DescriptorError(
            f"'docker_image_digests' has {len(digests)} entries but 'suites' has {len(suites)}"
        )
    return fields, ignored


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
                raise DescriptorError(f"{option}: expected dir=value, got {_shown(part)}")
            out[_sanitary(d, option)] = str(v)
    return out
