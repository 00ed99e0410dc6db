"""gitian.miniyaml against PyYAML: the same value, or Unsupported.

The subset reader may decline anything; what it must never do is return
something PyYAML would not (another value, another type, or a value where
PyYAML fails), or raise anything but Unsupported.  Checked on the real files
of tests/data/compat, on a table of edge cases, and on fuzzed documents
(``GITIAN_FUZZ_EXAMPLES`` raises the number of examples for a long run).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testdata import COMPAT

from gitian import miniyaml

EXAMPLES = int(os.environ.get("GITIAN_FUZZ_EXAMPLES", "300"))


def _pyyaml(text: str, loader: Any) -> tuple[str, Any]:
    try:
        return "ok", yaml.load(text, Loader=loader)
    except Exception as e:  # noqa: BLE001 - any failure is "PyYAML refuses"
        return "error", type(e).__name__


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types all the way down (True != 1 here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def check(text: str, allow_omap: bool = True) -> str:
    """The differential property; returns "ok" or "unsupported"."""
    try:
        mine = miniyaml.load(text, allow_omap)
    except miniyaml.Unsupported:
        return "unsupported"
    c = _pyyaml(text, yaml.CSafeLoader)
    p = _pyyaml(text, yaml.SafeLoader)
    assert c[0] == "ok", f"PyYAML refuses what miniyaml read: {text!r} -> {c[1]}"
    assert _same(mine, c[1]), f"{text!r}: miniyaml {mine!r} != libyaml {c[1]!r}"
    assert p[0] == "ok" and _same(mine, p[1]), f"{text!r}: pure-Python PyYAML gives {p!r}"
    return "ok"


def _real_files() -> list[tuple[Path, bool]]:
    out = [(p, False) for p in sorted(COMPAT.glob("descriptors/*.yml"))]
    out += [(p, True) for p in sorted(COMPAT.glob("yaml/*"))]
    out += [(p, True) for p in sorted(COMPAT.glob("sigs/**/*.assert"))]
    return out


def test_real_files() -> None:
    files = _real_files()
    if not files:
        pytest.skip("no compat data")
    accepted = 0
    for path, allow_omap in files:
        text = path.read_text(encoding="utf-8")
        verdict = check(text, allow_omap)
        if path.parent.name == "yaml":
            continue  # the golden writer examples hold multi-line quoted scalars
        # Every real assert and every real descriptor is inside the subset.
        assert verdict == "ok", path
        accepted += 1
    assert accepted >= 38  # 6 descriptors, 32 asserts


def test_real_asserts_are_read_in_well_under_a_millisecond() -> None:
    # Not a timing test: a bound that only a quadratic slip would break.
    import time

    asserts = sorted(COMPAT.glob("sigs/monero-linux-0.18/*/*/*.assert"))
    if not asserts:
        pytest.skip("no compat data")
    text = asserts[0].read_text()
    start = time.perf_counter()
    for _ in range(10):
        miniyaml.load(text, True)
    assert (time.perf_counter() - start) / 10 < 0.05


EDGE = [
    # documents
    "",
    "\n",
    "# only a comment\n",
    "---\n",
    "--- !!omap\n",
    "--- !!omap\n- a: 1\n- b: |\n    x\n",
    "--- !!omap\n- a: 1\n- a: 2\n",
    "--- !!omap\n- a\n",
    "--- !!omap\n- a: 1\n  b: 2\n",
    "--- !!omap\na: 1\n",
    "---\na: 1\n---\nb: 2\n",
    "a: 1\n...\n",
    "%YAML 1.1\n---\na: 1\n",
    "just text\n",
    "- a\n- b\n",
    "  a: 1\n  b: 2\n",
    "a: 1\n b: 2\n",
    "a: 1\n  b: 2\n",
    " a: 1\nb: 2\n",
    # block scalars and chomping
    "a: |\n  x\n",
    "a: |\n  x\n\n\n",
    "a: |-\n  x\n\n\n",
    "a: |+\n  x\n\n\n",
    "a: |\n  x",
    "a: |-\n  x",
    "a: |+\n  x",
    "a: |+\n  x\n  ",
    "a: |+\n  x\n   ",
    "a: |+\n  x\n \n",
    "a: |\n\n  x\n",
    "a: |\n   \n  x\n",
    "a: |\n  \n  x\n",
    "a: |+\n\n\n",
    "a: |\n\n\n",
    "a: |\nb: 1\n",
    "a: |+\n\nb: 1\n",
    "a: |\n",
    "a: |",
    "a: |\n  x\n  # not a comment\n  y\n",
    "a: |\n  x\n    indented\n  y\n",
    "a: |\n    x\n  y\n",
    "a: |\n  x\n\ty\n",
    "a: |\n  x\n  \ty\n",
    "a: |\n\tx\n",
    "a: |2\n   x\n",
    "a: | # comment\n  x\n",
    "a: >\n  x\n  y\n",
    "- |\n x\n- |-\n  y\n",
    "- a: |\n    x\n  b: |-\n    y\n",
    "- a: |\n- b: ''\n",
    "a:\n- |\n x\n",
    "a: |\n  ---\n  x\n",
    "a: |\n  x\n---\n",
    "a: |\n  x\n   \n",
    "a: |-\n  x\n   \n  \n",
    # mappings and sequences
    "a:\n",
    "a:",
    "a: \n",
    "a:\n  b: 1\n  c:\n    - x\n",
    "a:\n- x\n- y\nb: 1\n",
    "a:\n  - x\n  b: 1\n",
    "- a: 1\n  b: 2\n- c: 3\n",
    "- a: 1\n b: 2\n",
    "- a:\n  - x\n",
    "- a:\n    - x\n",
    "-\n- a\n",
    "-\n  a: 1\n",
    "- - a\n",
    "-a\n",
    "a: 1\na: 2\n",
    "a: 1\n'a': 2\n",
    '"a": 1\n"b": "two"\n',
    "'a': 'it''s'\n",
    '- "url": "https://example.org/x.git"\n  "dir": "x"\n  "commit": "abc"\n',
    '"a" : 1\n',
    '"a":1\n',
    "a:b\n",
    "a: b: c\n",
    "? a\n: b\n",
    "<<: 1\n",
    "=: 1\n",
    "1: a\n",
    "yes: a\n",
    "null: a\n",
    "a b: c\n",
    "a.b/c-d_e: f\n",
    # scalars
    "a: yes\nb: No\nc: on\nd: OFF\ne: y\nf: n\n",
    "a: ~\nb: null\nc: Null\nd: nul\n",
    "a: 1\nb: -1\nc: 0\nd: -0\ne: 007\nf: 0x1F\ng: 1_000\nh: 0b11\n",
    "a: 1:30\nb: 1.5\nc: .5\nd: 1.\ne: +1\nf: 1e5\ng: .inf\nh: -.inf\ni: .nan\n",
    "a: 999999999999999999\nb: 9999999999999999999\n",
    "a: 2019-01-01\nb: 2019-01-01 00:00:00\nc: 2019-1-1 0:00:00Z\n",
    "a: 0.18.3.1\nb: 22.0\nc: '22.0'\nd: v0.18\n",
    "a: -\n",
    "a: - b\n",
    "a: :x\n",
    "a: ?x\n",
    "a: x:y\n",
    "a: x #comment\n",
    "a: x#notcomment\n",
    "a: 'x' # c\n",
    "a: 'x'#c\n",
    "a: 'x' y\n",
    "a: 'unterminated\n",
    "a: 'multi\n  line'\n",
    'a: "x\\ty"\n',
    'a: "x y"\n',
    'a: "x\n  y"\n',
    "a: x\n  continued\n",
    "a: x\n\n  continued\n",
    "a: x\n  # comment\n",
    "a: []\nb: {}\nc: [ ]\nd: [1]\n",
    "a: !!omap []\n",
    "a: !!omap\n- b: 1\n",
    "a: !!omap\n  - b: 1\n  - c: 2\n",
    "a: !!str x\n",
    "a: &x 1\nb: *x\n",
    "a: @x\n",
    "a: `x\n",
    "a: %x\n",
    "a: x\tb\n",
    "a:\tb\n",
    "\ta: b\n",
    "a: b\r\n",
    "a: b\x85c\n",
    "a: b\u2028c\n",
    "a: é ü\n",
    "a: \xa0x\n",
    "a: x \n",
    "a: http://example.org/path?x=1&y=2\n",
    "a: git://host/repo.git\n",
    "a: x, y\n",
    "a: [x\n",
    "a: }\n",
    "key with spaces: x\n",
    "a:\n  - b\n  -\n  - c\n",
    "a:\n    b: 1\n  c: 2\n",
]


@pytest.mark.parametrize("allow_omap", [True, False])
@pytest.mark.parametrize("text", EDGE)
def test_edge_cases(text: str, allow_omap: bool) -> None:
    check(text, allow_omap)


def test_the_common_shapes_are_inside_the_subset() -> None:
    for text in [
        "--- !!omap\n- out_manifest: |\n    abc  x\n- in_manifest: |-\n    def  y\n"
        "- base_manifests: !!omap\n  - bionic-amd64: |\n      123  z\n"
        "- release: v1\n- name: pkg\n- type: build\n- optionals: \n",
        '---\nname: "pkg"\nsuites:\n- "bionic"\nremotes:\n- "url": "https://x.org/r.git"\n'
        '  "dir": "r"\nfiles: []\nscript: |\n  set -e\n  echo "a: b" # c\n',
    ]:
        assert check(text) == "ok"


def test_deep_and_large_documents_are_declined() -> None:
    deep = "".join("  " * i + f"k{i}:\n" for i in range(30)) + "  " * 30 + "x: 1\n"
    assert check(deep) == "unsupported"
    many = "- a\n" * (miniyaml.MAX_NODES + 1)
    assert check(many) == "unsupported"
    assert check("- a\n" * 100) == "ok"


# --------------------------------------------------------------------------
# fuzzing

_ATOMS = [
    "a",
    "b",
    "key",
    "url",
    "'q'",
    "'it''s'",
    '"dq"',
    "1",
    "-1",
    "007",
    "1.5",
    "yes",
    "no",
    "null",
    "~",
    "x:y",
    "x #c",
    "[]",
    "{}",
    "2019-01-01",
    "0.18",
    "v1",
    "é",
    "",
]
_LINE_STARTS = ["", "- ", "-", "key: ", "key:", "a: ", "'k': ", '"k": ', "# ", "--- ", "? "]
_TAILS = ["", "|", "|-", "|+", "!!omap", ">", " #c", "  ", "\t", "&a", "*a", "!!str"]


@st.composite
def documents(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        indent = " " * draw(st.sampled_from([0, 0, 1, 2, 2, 3, 4, 6]))
        start = draw(st.sampled_from(_LINE_STARTS))
        atom = draw(st.sampled_from(_ATOMS))
        tail = draw(st.sampled_from(_TAILS))
        lines.append(indent + start + atom + tail)
    text = "\n".join(lines)
    return text + draw(st.sampled_from(["", "\n", "\n\n", "\n  \n"]))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(documents(), st.booleans())
def test_fuzzed_documents(text: str, allow_omap: bool) -> None:
    check(text, allow_omap)


_SCALARS = [*_ATOMS, "'a: b'", "'#x'", '"x: y"', "x y z", "a-b.c/d", "http://h/p"]
_BLOCK_LINES = ["x", "  indented", "# hash", "a: b", "- dash", "", " ", "   ", "\tTab", "'q'"]


@st.composite
def trees(draw: st.DrawFn) -> str:
    """Documents written the way real files are, with random layout choices:
    mostly inside the subset, so the property is exercised on accepted text."""
    out: list[str] = []

    def scalar_lines(col: int) -> tuple[str, list[str]]:
        kind = draw(st.sampled_from(["plain", "plain", "block", "empty"]))
        if kind == "plain":
            return " " + draw(st.sampled_from(_SCALARS)), []
        if kind == "empty":
            return draw(st.sampled_from(["", " ", " # c"])), []
        header = " " + draw(st.sampled_from(["|", "|-", "|+"]))
        pad = " " * (col + draw(st.sampled_from([1, 2, 2, 4])))
        body = [pad + line for line in draw(st.lists(st.sampled_from(_BLOCK_LINES), max_size=5))]
        body = [
            line if line.strip(" ") else line[: draw(st.integers(0, len(line)))] for line in body
        ]
        return header, body

    def node(col: int, depth: int) -> None:
        kind = draw(st.sampled_from(["map", "seq"]) if depth < 3 else st.just("map"))
        for _ in range(draw(st.integers(1, 4))):
            if draw(st.integers(0, 9)) == 0:
                out.append(" " * draw(st.integers(0, col + 2)) + draw(st.sampled_from(["", "# c"])))
            if kind == "map":
                key = draw(st.sampled_from(["a", "b", "key", "url", '"dir"', "'q'", "x.y", "k-1"]))
                head = " " * col + key + ":"
            else:
                head = " " * col + "-"
            nested = depth < 3 and draw(st.integers(0, 3)) == 0
            if nested:
                if kind == "map" and draw(st.booleans()):
                    out.append(head + draw(st.sampled_from(["", " !!omap"])))
                    out_len = len(out)
                    node(col + draw(st.sampled_from([0, 2, 4])), depth + 1)
                    if len(out) == out_len:
                        out.append(" " * col + "- z")
                else:
                    out.append(head)
                    node(col + draw(st.sampled_from([1, 2, 4])), depth + 1)
            elif kind == "seq" and draw(st.integers(0, 3)) == 0:
                # a compact mapping in a sequence entry
                inner = col + 2
                out.append(head + " k: v")
                if draw(st.booleans()):
                    out.append(" " * inner + "k2:" + scalar_lines(inner)[0])
            else:
                text, body = scalar_lines(col)
                out.append(head + text)
                out.extend(body)

    prefix = draw(st.sampled_from(["", "---\n", "--- !!omap\n", "# c\n"]))
    node(draw(st.sampled_from([0, 0, 2])), 0)
    return prefix + "\n".join(out) + draw(st.sampled_from(["", "\n", "\n\n", "\n  "]))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(trees(), st.booleans())
def test_generated_documents(text: str, allow_omap: bool) -> None:
    check(text, allow_omap)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(trees(), st.integers(0, 10_000), st.sampled_from(["", " ", "\n", "-", ":", "#", "'", "|"]))
def test_generated_then_mutated(text: str, at: int, piece: str) -> None:
    pos = at % (len(text) + 1)
    check(text[:pos] + piece + text[pos + (1 if at % 2 else 0) :], True)


def _seed_texts() -> list[str]:
    seeds = [t for t in EDGE if len(t) > 5]
    for path, _ in _real_files()[:12]:
        text = path.read_text(encoding="utf-8")
        seeds.append(text[:1500])
    return seeds or ["a: 1\n"]


_SEEDS = _seed_texts()
_INSERTS = [" ", "  ", "\n", "-", ":", "#", "'", '"', "|", "\t", "a", "1", "- ", ": ", "!!omap"]


@st.composite
def mutations(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(_SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.sampled_from(_INSERTS))
        if op == "insert":
            text = text[:pos] + piece + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 3)) :]
        else:
            text = text[:pos] + piece + text[pos + 1 :]
    return text


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutations(), st.booleans())
def test_mutated_documents(text: str, allow_omap: bool) -> None:
    check(text, allow_omap)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(alphabet=st.sampled_from(list(" \n-:#'\"|!a1\t[]{}&*>?,%@`~.")), max_size=60))
def test_random_text(text: str) -> None:
    check(text, True)
