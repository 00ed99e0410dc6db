"""Bounded fuzzing of the two parsers that read other people's YAML (issue 6, item 5).

:func:`gitian.descriptor.parse` must return a descriptor or raise
:class:`DescriptorError`; :func:`gitian.manifest.load_report` must return a
report or raise :class:`InputError`.  Never any other exception, never a crash,
and every message one printable line.  Inputs: arbitrary bytes, YAML-ish token
soup (anchors, aliases, tags, flow and block syntax), structured documents
with the descriptor's keys holding values of any type, and byte-level
mutations of real descriptors and real result/assert files.

Each property runs a bounded number of examples (``FUZZ_EXAMPLES``, default
300) with no per-example deadline, so the whole file takes seconds.  Set
``FUZZ_EXAMPLES`` higher for a longer local run.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testdata import COMPAT

from gitian import descriptor
from gitian.errors import DescriptorError, InputError
from gitian.manifest import Report, load_report

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _files(sub: str, pattern: str) -> list[bytes]:
    d = COMPAT / sub
    if not d.is_dir():
        pytest.fail(f"compat data missing at {d}")
    return [p.read_bytes() for p in sorted(d.glob(pattern))]


DESCRIPTORS = _files("descriptors", "*.yml")
REPORTS = _files("yaml", "*")

DESC_KEYS_FOR_LINES = [
    "name", "suites", "architectures", "remotes", "url", "dir", "commit", "files", "script",
    "reference_datetime", "optionals", "out_manifest", "base_manifests", "release", "type",
]
TOKENS = [
    "name: ", "suites:", "architectures:", "remotes:", "url: ", "dir: ", "commit: ",
    "files:", "script: ", "optionals:", "reference_datetime: ", "packages:",
    "out_manifest: ", "in_manifest: ", "base_manifests: ", "release: ", "type: build",
    "- ", "\n", "\n  ", "\n- ", "  ", ": ", ", ", "[", "]", "{", "}", "'", '"', "|", "|-",
    ">", "#", "&a ", "&b ", "*a", "*b", "<<: ", "=: ", "? ", "!!omap ", "!!str ", "!!binary ",
    "!!python/object/apply:os.system ", "!!set ", "! ", "!x ", "%TAG ! tag:x,2000:\n",
    "%YAML 1.1\n", "---\n", "--- !!omap\n", "...\n", "\t", "\\", "\\x1b", "\x1b[31m", "\u202e",
    "\ufeff", "\x85", "\u2028", "~", "null", "true", "yes", "0x1F", "0o17", "1e9", ".inf",
    "2020-01-01 00:00:00", "2020-13-45", "9" * 40, "-", "..", "../", "/etc", "ext::sh",
    "--upload-pack=x", "$(id)", "`id`", ";", "pkg", "amd64", "bookworm", "a" * 50,
]

yaml_soup = st.lists(st.sampled_from(TOKENS), max_size=60).map("".join)

# Line-shaped YAML: mostly well-formed, so the implicit resolvers (timestamps,
# integers, floats, merge keys), anchors, aliases and tags are reached.
PLAIN_VALUES = [
    "pkg", "bookworm", "amd64", "2020-01-01 00:00:00", "2020-13-45", "2020-01-01 00:00:00+99:00",
    "0001-01-01 00:00:00+01:00", "9" * 5000, "1" * 40, "0x" + "f" * 100, "1e400", "-.inf", ".nan",
    "0o777", "1_000", "190:20:30", "yes", "~", "''", "\"\\x1b[2J\"", "\"\\0\"", "[]", "{}",
    "[a, b]", "{a: 1}", "&a [x, y]", "&b {k: v}", "*a", "*b", "!!omap [a: 1]", "!!binary aGk=",
    "!!python/object/apply:os.system [id]", "!!set {a}", "!x y", "|", "|-", ">", "ext::sh",
    "--upload-pack=x", "../x", "/etc/passwd", "$(id)", "'a''b'", "\u202e", "\x1b[31m",
]
line = st.tuples(
    st.sampled_from(["", "  ", "    ", "- ", "  - ", "\t"]),
    st.sampled_from([*DESC_KEYS_FOR_LINES, "<<", "=", "? x", "", "x"]),
    st.sampled_from(PLAIN_VALUES),
).map(lambda t: f"{t[0]}{t[1]}: {t[2]}" if t[1] else f"{t[0]}{t[2]}")
yaml_lines = st.lists(line, max_size=25).map(lambda ls: "\n".join(ls) + "\n")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.sampled_from(["../x", "/abs", "-x", "ext::sh", "a b", "x\ny", "\x1b[2J", "pkg"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=8,
)
# Cheaper to draw than ``values`` and closer to what the keys expect.
FIELDS = ["url", "dir", "commit", "source", "distribution", "packages", "package", "path"]
shallow = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.lists(st.dictionaries(st.sampled_from(FIELDS), scalars, max_size=3), max_size=2),
)
DESC_KEYS = [
    "name", "distro", "suites", "architectures", "packages", "reference_datetime", "remotes",
    "files", "script", "enable_cache", "sudo", "multiarch", "repositories", "alternatives",
    "docker_image_digests", "optionals",
]
REMOTE = st.fixed_dictionaries({}, optional={"url": scalars, "dir": scalars, "commit": scalars})
descriptor_docs = st.fixed_dictionaries(
    {
        "name": st.one_of(st.just("pkg"), scalars),
        "suites": st.one_of(st.just(["bookworm"]), shallow),
        "architectures": st.one_of(st.just(["amd64"]), shallow),
    },
    optional={
        **{k: shallow for k in DESC_KEYS if k not in ("name", "suites", "architectures")},
        "remotes": st.one_of(shallow, st.lists(REMOTE, max_size=3)),
        "optionals": values,
    },
)


def _dump(doc: Any) -> bytes:
    return yaml.dump(doc, Dumper=yaml.CSafeDumper, allow_unicode=True).encode("utf-8")


@st.composite
def mutated(draw: st.DrawFn, corpus: list[bytes]) -> bytes:
    """A real file with a few byte-level edits: flips, insertions, deletions, splices."""
    data = bytearray(draw(st.sampled_from(corpus)))
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "insert", "delete", "token", "truncate"]))
        if op == "flip":
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 40))]
        elif op == "token":
            data[i:i] = draw(st.sampled_from(TOKENS)).encode("utf-8")
        else:
            del data[i:]
    return bytes(data)


def _check_descriptor(raw: bytes) -> None:
    try:
        d = descriptor.parse(raw, "fuzz.yml")
    except DescriptorError as e:
        msg = str(e)
        assert msg.startswith("fuzz.yml: "), msg
        assert msg.isprintable(), repr(msg)
    else:
        assert isinstance(d, descriptor.Descriptor)
        assert descriptor.SANITARY.fullmatch(d.name)
        for r in d.remotes:
            assert not r.url.startswith("-") and "::" not in r.url.split("/", 1)[0]


def _check_report(raw: bytes) -> None:
    try:
        r = load_report(raw, "fuzz.assert")
    except InputError as e:
        msg = str(e)
        assert "\n" not in msg and msg.isprintable(), repr(msg)
    else:
        assert isinstance(r, Report)
        assert isinstance(r.out_manifest, str)


@FUZZ
@given(st.binary(max_size=4096))
def test_descriptor_bytes(raw: bytes) -> None:
    _check_descriptor(raw)


@FUZZ
@given(yaml_soup)
def test_descriptor_yaml_soup(text: str) -> None:
    _check_descriptor(text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(yaml_lines)
def test_descriptor_yaml_lines(text: str) -> None:
    _check_descriptor(text.encode("utf-8"))


@FUZZ
@given(yaml_lines)
def test_report_yaml_lines(text: str) -> None:
    _check_report(("--- !!omap\n" + text).encode("utf-8"))
    _check_report(text.encode("utf-8"))


@FUZZ
@given(descriptor_docs)
def test_descriptor_structured(doc: dict[str, Any]) -> None:
    _check_descriptor(_dump(doc))


@FUZZ
@given(mutated(DESCRIPTORS))
def test_descriptor_mutated_real(raw: bytes) -> None:
    _check_descriptor(raw)


@FUZZ
@given(st.binary(max_size=4096))
def test_report_bytes(raw: bytes) -> None:
    _check_report(raw)


@FUZZ
@given(yaml_soup)
def test_report_yaml_soup(text: str) -> None:
    _check_report(("--- !!omap\n" + text).encode("utf-8", "surrogatepass"))


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                ["out_manifest", "in_manifest", "base_manifests", "cache_common_manifest",
                 "cache_package_manifest", "release", "name", "type", "optionals", "x"]
            ),
            st.one_of(scalars, st.just([]), values),
        ),
        max_size=8,
    )
)
def test_report_structured(pairs: list[tuple[str, Any]]) -> None:
    body = _dump([{k: v} for k, v in pairs]) if pairs else b"[]\n"
    _check_report(b"--- !!omap\n" + body)


@FUZZ
@given(mutated(REPORTS))
def test_report_mutated_real(raw: bytes) -> None:
    _check_report(raw)


def test_corpora_parse_unmutated() -> None:
    """The seeds themselves are valid, so mutations start from real files."""
    for raw in DESCRIPTORS:
        descriptor.parse(raw)
    for raw in REPORTS:
        load_report(raw, "seed")


BASE = descriptor.parse(
    b"name: pkg\nsuites: [bookworm]\narchitectures: [amd64]\n"
    b"remotes:\n- url: https://example.invalid/pkg.git\n  dir: pkg\n"
)
_OVERRIDE_PIECES = [*TOKENS, "=", ",", ":", "@", "//", "file://", "https://", "ssh://", "[", "]"]
override_value = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(_OVERRIDE_PIECES), max_size=8).map("".join),
)
# Mostly "pkg=<value>" (the descriptor's one remote), sometimes anything at all.
override_text = st.one_of(override_value.map(lambda v: "pkg=" + v), override_value)


@FUZZ
@given(commits=override_text, urls=override_text)
def test_command_line_overrides(commits: str, urls: str) -> None:
    """``--commit``/``--url`` strings: applied or refused, never anything else;
    whatever is accepted is safe to put on git's command line."""
    try:
        d = BASE.with_overrides(
            descriptor.parse_assignments(commits, "--commit"),
            descriptor.parse_assignments(urls, "--url"),
        )
    except DescriptorError as e:
        assert str(e).isprintable(), repr(str(e))
        return
    for r in d.remotes:
        assert not r.url.startswith("-") and not r.url.split("/", 1)[0].endswith("::")
        assert "::" not in r.url.split("/", 1)[0]
        assert r.url.isprintable() and " " not in r.url
        if r.commit is not None:
            assert descriptor.COMMIT.fullmatch(r.commit) and not r.commit.startswith("-")
