"""Result and assert files: the report model, its reader and its writer.

A *result* file (``result/<name>-res.yml``, written by gbuild) is a YAML
``!!omap`` of five manifests.  An *assert* (``<name>-build.assert``, written by
gsign) is the same five keys followed by ``release``, ``name``, ``type`` and
``optionals``.  Both are written byte-for-byte as the classic Ruby tools
(Psych on libyaml) write them, because signatures cover those bytes; see
``docs/formats.md`` and :mod:`gitian.psych`.

The reader accepts what real signature trees contain (a decade of
Psych/libyaml generations: ``--- !omap`` and ``--- !!omap``, quoted scalars
with the non-specific tag ``! '...'``, ``optionals: `` with a trailing space
and without, block or quoted scalars) and never executes anything: the only
YAML loader is :func:`gitian.safeyaml.safe_yaml`, which refuses every tag
Psych did not write.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gitian import psych
from gitian.errors import DescriptorError, InputError
from gitian.run import write_atomic
from gitian.safeyaml import safe_yaml
from gitian.text import printable
from gitian.values import kind

#: The five keys of a result file, in the order gbuild writes them.
RESULT_KEYS = (
    "out_manifest",
    "in_manifest",
    "base_manifests",
    "cache_common_manifest",
    "cache_package_manifest",
)
#: The keys gsign appends to make an assert.
ASSERT_KEYS = ("release", "name", "type", "optionals")

MAX_REPORT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Report:
    """The content of a result file or an assert.

    ``base_manifests`` keeps its order: ``(("<suite>-<arch>", text), ...)``.
    The assert fields are ``None`` for a result file; ``has_assert_fields``
    says whether the file carried any of them.
    """

    out_manifest: str
    in_manifest: str = ""
    base_manifests: tuple[tuple[str, str], ...] = ()
    cache_common_manifest: str = ""
    cache_package_manifest: str = ""
    release: str | None = None
    name: str | None = None
    type: str | None = None
    optionals: Any = None
    has_assert_fields: bool = False

    def as_result(self) -> Report:
        """The same manifests without the assert fields."""
        return replace(
            self, release=None, name=None, type=None, optionals=None, has_assert_fields=False
        )

    def as_assert(self, release: str, name: str, optionals: Any) -> Report:
        """The assert gsign makes from this result."""
        return replace(
            self,
            release=release,
            name=name,
            type="build",
            optionals=optionals,
            has_assert_fields=True,
        )


# --------------------------------------------------------------------------
# reading


def _pairs(doc: Any, what: str) -> list[tuple[Any, Any]]:
    """An ``!!omap`` (list of pairs), a plain mapping, or ``[]`` as pairs."""
    if isinstance(doc, dict):
        return list(doc.items())
    if isinstance(doc, list):
        pairs: list[tuple[Any, Any]] = []
        for item in doc:
            if isinstance(item, tuple) and len(item) == 2:
                pairs.append((item[0], item[1]))
            elif isinstance(item, dict) and len(item) == 1:
                pairs.extend(item.items())
            else:
                raise InputError(f"{what} must be a mapping or !!omap, not a plain list")
        return pairs
    raise InputError(f"{what} must be a mapping or !!omap, not {kind(doc)}")


def _text(v: Any, key: str, where: str) -> str:
    if not isinstance(v, str):
        raise InputError(f"{where}: {key!r} must be a string, not {kind(v)}")
    return v


def load_report(raw: bytes, where: str) -> Report:
    """Parse a result file or an assert.  ``where`` names it in errors.

    Raises :class:`InputError` with one line naming ``where``.
    """

    return Report(**report_fields(raw, where))


def report_fields(raw: bytes, where: str) -> dict[str, Any]:
    """What :func:`load_report` checks and returns, as :class:`Report`'s
    keyword arguments (without building one)."""
    if len(raw) > MAX_REPORT_BYTES:
        raise InputError(f"{where}: larger than {MAX_REPORT_BYTES} bytes")
    try:
        doc = safe_yaml(raw, where, psych=True)
    except DescriptorError as e:
        raise InputError(e.message, hint=e.hint) from None
    if doc is None:
        raise InputError(f"{where}: empty file, not a result or assert")
    try:
        top = _pairs(doc, "the document")
    except InputError as e:
        raise InputError(f"{where}: {e.message}") from None
    fields: dict[str, Any] = {}
    for key, value in top:
        if not isinstance(key, str):
            raise InputError(f"{where}: key {key!r} is not a string")
        if key in fields:
            raise InputError(f"{where}: key {key!r} appears twice")
        fields[key] = value
    if "out_manifest" not in fields:
        raise InputError(f"{where}: no 'out_manifest': not a result or assert file")

    bases: list[tuple[str, str]] = []
    raw_bases = fields.get("base_manifests")
    if raw_bases is not None:
        try:
            base_pairs = _pairs(raw_bases, "'base_manifests'")
        except InputError as e:
            raise InputError(f"{where}: {e.message}") from None
        seen: set[str] = set()
        for k, v in base_pairs:
            if not isinstance(k, str):
                raise InputError(f"{where}: 'base_manifests' key {k!r} is not a string")
            if k in seen:
                raise InputError(f"{where}: 'base_manifests' key {k!r} appears twice")
            seen.add(k)
            bases.append((k, _text(v, f"base_manifests/{k}", where)))

    def opt_str(key: str) -> str | None:
        v = fields.get(key)
        return None if v is None else _text(v, key, where)

    return dict(
        out_manifest=_text(fields["out_manifest"], "out_manifest", where),
        in_manifest=_text(fields.get("in_manifest", ""), "in_manifest", where),
        base_manifests=tuple(bases),
        cache_common_manifest=_text(
            fields.get("cache_common_manifest", ""), "cache_common_manifest", where
        ),
        cache_package_manifest=_text(
            fields.get("cache_package_manifest", ""), "cache_package_manifest", where
        ),
        release=opt_str("release"),
        name=opt_str("name"),
        type=opt_str("type"),
        optionals=fields.get("optionals"),
        has_assert_fields=any(k in fields for k in ASSERT_KEYS),
    )


def read_report(path: Path) -> Report:
    """Read and parse a result or assert file (missing file: InputError)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}") from None
    return load_report(raw, str(path))


# --------------------------------------------------------------------------
# writing


_SURROGATE = re.compile("[\ud800-\udfff]")


def _utf8(key: str, text: str) -> str:
    """Result files are UTF-8 text: refuse undecodable bytes (surrogate escapes)."""
    m = _SURROGATE.search(text)
    if m is not None:
        start = text.rfind("\n", 0, m.start()) + 1
        end = text.find("\n", m.start())
        line = text[start : len(text) if end < 0 else end]
        shown = line.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise InputError(
            f"{key}: not UTF-8: {printable(shown)} (result files hold UTF-8 text only)",
            hint="rename the file so that its name is UTF-8",
        )
    return text


def _result_pairs(report: Report) -> list[tuple[str, Any]]:

    _utf8("out_manifest", report.out_manifest)
    _utf8("in_manifest", report.in_manifest)
    for k, v in report.base_manifests:
        _utf8(f"base_manifests/{k}", v)
        _utf8("base_manifests", k)
    _utf8("cache_common_manifest", report.cache_common_manifest)
    _utf8("cache_package_manifest", report.cache_package_manifest)
    return [
        ("out_manifest", report.out_manifest),
        ("in_manifest", report.in_manifest),
        ("base_manifests", psych.Omap(report.base_manifests)),
        ("cache_common_manifest", report.cache_common_manifest),
        ("cache_package_manifest", report.cache_package_manifest),
    ]


def dump_result(report: Report) -> bytes:
    """The result file gbuild writes, byte-identical to the classic tool's."""

    return psych.dump(psych.Omap(_result_pairs(report)))


def dump_assert(report: Report, release: str, name: str, optionals: Any) -> bytes:
    """The assert gsign writes for ``report``, byte-identical to the classic tool's."""

    pairs = _result_pairs(report) + [
        ("release", release),
        ("name", name),
        ("type", "build"),
        ("optionals", optionals),
    ]
    return psych.dump(psych.Omap(pairs))


def dump_report(report: Report) -> bytes:
    """A result, or an assert when ``report`` carries the assert fields."""

    if not report.has_assert_fields:
        return dump_result(report)
    return psych.dump(
        psych.Omap(
            _result_pairs(report)
            + [
                ("release", report.release),
                ("name", report.name),
                ("type", report.type),
                ("optionals", report.optionals),
            ]
        )
    )


def write_report(path: Path, data: bytes) -> None:
    """Write a dumped report atomically (temporary file, then rename)."""

    write_atomic(path, data)


# --------------------------------------------------------------------------
# manifest texts


def manifest_lines(entries: Iterable[tuple[str, str]]) -> str:
    """``sha256sum``-style lines, ``"<hash>  <path>\\n"`` each, in the given order."""
    return "".join(f"{sha}  {path}\n" for sha, path in entries)


def manifest_files(text: str) -> dict[str, str]:
    """``sha256sum``-style lines as file name -> hash (a line without the two
    spaces: itself -> "")."""
    files: dict[str, str] = {}
    for line in text.split("\n"):
        digest, sep, name = line.partition("  ")
        if sep:
            files[name] = digest
        elif line.strip():
            files[line] = ""
    return files


def sums_lines(text: str) -> list[str]:
    """The lines of :func:`check_sums`-checked ``text``, split at ``\\n`` only,
    without their line ends (LF, CRLF, CR CR LF)."""
    lines = text.split("\n")
    if not lines[-1]:
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def in_manifest_text(
    desc_sha: str,
    name: str,
    file_lines: Sequence[tuple[str, str]],
    remotes: Sequence[tuple[str, str]],
) -> str:
    """The classic ``in_manifest``.

    The descriptor's line (its file name replaced by ``<name>-desc.yml``) and
    one line per ``files:`` input, each ending in a newline; then one
    ``git:<commit> <dir>`` entry per remote, run together WITHOUT newlines.
    The missing newlines are a quirk of the classic gbuild that we keep: the
    hashes people have signed depend on it (docs/formats.md).
    """
    text = manifest_lines([(desc_sha, f"{name}-desc.yml"), *file_lines])
    text += "".join(f"git:{commit} {directory}" for commit, directory in remotes)
    return text


# A name holds no control character; CRs may end the line (real SHA256SUMS
# end lines in CRLF, and guix.sigs 22.0rc1's codesigned ones in CR CR LF).
_SUMS_LINE = re.compile("\\\\?[0-9a-f]{64} [ *][^\x00-\x1f\x7f]+\r*")


def check_sums(text: str, where: str) -> None:
    """Refuse ``text`` unless it is ``sha256sum`` output: one or more lines of a
    lower-case sha256, two spaces (or `` *``) and a name without control
    characters (``\\`` in front when the name holds an escape).  guix.sigs'
    22.0rc1 and 22.0rc2 attestations end their lines in CRLF (or CR CR LF)
    and the last one in nothing; those are read too."""
    if not text:
        raise InputError(f"{where}: empty, not a list of checksums")
    lines = text.split("\n")
    for n, line in enumerate(lines[:-1] if not lines[-1] else lines, 1):
        if not _SUMS_LINE.fullmatch(line):
            shown = printable(line, quote=True, limit=80)
            raise InputError(f"{where}: line {n} is not a sha256sum line: {shown}")
