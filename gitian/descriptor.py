"""The build descriptor, parsed once and validated into frozen dataclasses.

Everything a descriptor says may end up on a command line, in a path or in a
script, and descriptors are written by other people.  So this module refuses,
with one line naming the key, anything that is not of the expected shape
before any other work starts: wrong types, unsafe names, option-like values,
git transports that run programs, YAML tags and alias bombs.  Past this module
no code sees the raw YAML.

"""

from __future__ import annotations

import difflib
import hashlib
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gitian import values
from gitian.errors import DescriptorError
from gitian.safeyaml import MAX_DEPTH as MAX_DEPTH
from gitian.safeyaml import MAX_EXPANDED_NODES as MAX_EXPANDED_NODES
from gitian.safeyaml import safe_yaml as safe_yaml
from gitian.text import printable
from gitian.values import ARCHITECTURES as ARCHITECTURES
from gitian.values import COMMIT as COMMIT
from gitian.values import SANITARY as SANITARY

MAX_DESCRIPTOR_BYTES = 4 * 1024 * 1024
#: How alike (difflib's ratio) an unknown key must be to a descriptor key to be
#: refused as a typo of it: catches ``pakages``, ``file``, ``remote``,
#: ``architecture``, ``refrence_datetime``, ``scrip``, ``Name``; leaves keys of
#: a project's own (``version``, ``description``, ``notes``, ``sources``) alone.
TYPO_CUTOFF = 0.8
MAX_IGNORED_SHOWN = 10


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
            url = values.url(urls[r.dir], "--url", local_ok=True) if r.dir in urls else r.url
            commit = values.commit(commits[r.dir], "--commit") if r.dir in commits else r.commit
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
    """The sanitary ``name:`` of the descriptor at ``path`` - all that gverify
    needs, so (as with the classic tool) a descriptor with only ``name:`` will
    do; it is read with the same safe loader as any descriptor, but the other
    keys are not checked (gverify builds nothing from them)."""
    where = printable(_file_name(path))
    raw = _read(path)
    if len(raw) > MAX_DESCRIPTOR_BYTES:
        raise DescriptorError(f"{where}: larger than {MAX_DESCRIPTOR_BYTES} bytes")
    doc = safe_yaml(raw, where)
    if not isinstance(doc, dict):
        raise DescriptorError(f"{where}: a descriptor must be a mapping, not {values.kind(doc)}")
    if "name" not in doc:
        raise DescriptorError(f"{where}: missing required key 'name'")
    try:
        return values.sanitary(doc["name"], "name")
    except DescriptorError as e:
        raise DescriptorError(printable(f"{where}: {e.message}")) from None


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
        raise DescriptorError(f"{where}: a descriptor must be a mapping, not {values.kind(doc)}")
    try:
        fields, ignored = _validate(doc)
    except DescriptorError as e:
        raise DescriptorError(printable(f"{where}: {e.message}"), hint=e.hint) from None
    if ignored:
        fields["warnings"] = (printable(f"{where}: {_ignored(ignored)}"),)
    return fields


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
        return tuple(self.item(x, key) for x in values.sequence(v, key, required=self.nonempty))


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
        for i, entry in enumerate(values.sequence(v, key)):
            where = f"{key}[{i}]"
            checked = _check_fields(values.mapping(entry, where), self.fields, where)
            if self.unique is not None:
                if checked[self.unique] in seen:
                    raise DescriptorError(
                        f"{where}.{self.unique} {checked[self.unique]!r} is used by two {key}"
                    )
                seen.add(checked[self.unique])
            out.append(self.make(**checked))
        return tuple(out)


REMOTE_FIELDS = (
    Field("url", values.url, required=True),
    Field("dir", values.sanitary, required=True),
    Field("commit", values.commit),
)
REPOSITORY_FIELDS = (
    Field("source", values.apt_source, required=True),
    Field("distribution", values.sanitary, required=True),
    Field("packages", ListOf(values.package), default=()),
)
ALTERNATIVE_FIELDS = (
    Field("package", values.alternative_name, required=True),
    Field("path", values.alternative_path, required=True),
)

#: Every key a descriptor may have (SPEC §2), in the order they are checked.
FIELDS = (
    Field("name", values.sanitary, required=True),
    Field("distro", values.distro, default="ubuntu"),
    Field("suites", ListOf(values.sanitary, nonempty=True), required=True),
    Field("architectures", ListOf(values.architecture, nonempty=True), required=True),
    Field("packages", ListOf(values.package), default=()),
    Field("remotes", Entries(REMOTE_FIELDS, Remote, unique="dir"), default=()),
    Field("reference_datetime", values.reference_datetime),
    Field("files", ListOf(values.sanitary), default=()),
    Field("script", values.script, default=""),
    Field("enable_cache", values.boolean, default=False),
    Field("sudo", values.boolean, default=False),
    Field("multiarch", ListOf(values.dpkg_arch), default=()),
    Field("repositories", Entries(REPOSITORY_FIELDS, Repository), default=()),
    Field("alternatives", Entries(ALTERNATIVE_FIELDS, Alternative), default=()),
    Field("docker_image_digests", ListOf(values.digest), default=()),
    Field("optionals", values.optionals),
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
                f"unknown key {values.shown(label)} (did you mean {meant[0]!r}?)",
                hint="correct its spelling (a key of the project's own must not be this "
                "close to a descriptor key)",
            )
        unknown.append(label)
    return unknown


def _ignored(labels: Sequence[str]) -> str:
    """One line naming the keys no field reads."""
    shown = ", ".join(values.shown(k) for k in labels[:MAX_IGNORED_SHOWN])
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
            raise DescriptorError(f"top-level key {values.shown(str(k))} is not a string")
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
                raise DescriptorError(f"{option}: expected dir=value, got {values.shown(part)}")
            out[values.sanitary(d, option)] = str(v)
    return out
