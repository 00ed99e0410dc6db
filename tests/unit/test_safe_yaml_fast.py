"""safe_yaml's fast paths: the subset reader (gitian.miniyaml), and PyYAML
without the event scan when the text cannot hold what the scan looks for.

Every document must get exactly the verdict and message it gets the scanned
way; these tests compare the two on real files and on hostile ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from testdata import COMPAT

from gitian import miniyaml, safeyaml
from gitian.errors import DescriptorError
from gitian.safeyaml import safe_yaml

OMAP_SEQ = "--- !!omap\n- a: 1\n- b: |\n    x\n"

HOSTILE = {
    "str-tag": "a: !!str 1\n",
    "local-tag": "a: !foo 1\n",
    "omapx": "--- !!omapx\n- a: 1\n",
    "omap-no-blank": "a: !!omap\u0085- b\n",
    "verbatim": "a: !<tag:yaml.org,2002:str> 1\n",
    "nonspecific": "a: ! 1\n",
    "tag-directive": "%TAG ! tag:example.com,2000:\n---\na: !x 1\n",
    "tag-directive-unused": "%TAG !e! tag:example.com,2000:\n---\na: 1\n",
    "tag-directive-omap": "%TAG !! tag:example.com,2000:\n--- !!omap\n- a: 1\n",
    "omap-on-mapping": "--- !!omap\na: 1\n",
    "omap-on-scalar": "a: !!omap 1\n",
    "python-tag": "a: !!python/object:os.system ls\n",
    "anchor-twice": "a: &x 1\nb: &x 2\n",
    "undefined-alias": "a: *x\n",
    "alias-bomb": "a: &a ['x','x','x','x','x','x','x','x','x','x']\n"
    + "".join(
        f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ),
    "deep-block": "".join("  " * i + "-\n" for i in range(70)) + "  " * 70 + "x\n",
    "deep-compact": "- " * 70 + "x\n",
    "deep-mapping": "".join("  " * i + f"k{i}:\n" for i in range(70)) + "  " * 70 + "x\n",
    "deep-flow": "[" * 70 + "]" * 70 + "\n",
    "many-nodes": "- a\n" * 50_001,
    "two-documents": "a: 1\n---\nb: 2\n",
    "second-document-tagged": "a: 1\n--- !!str\nb\n",
    "merge-key": "base: {a: 1}\nb:\n  <<: {a: 2}\n",
    "merge-key-block": "b:\n  <<: 1\n",
    "duplicate-key": "a: 1\na: 2\n",
    "bad-date": "a: 2020-13-45\n",
    "huge-int": "a: " + "9" * 5000 + "\n",
    "syntax": "a: [1, 2\n",
    "syntax-block": "a: b: c\n",
    "empty": "",
    "comment": "# nothing\n",
    "scalar": "just text\n",
    "bang-in-text": "a: 'wow!'\n",
    "long-line-deep": "- " * 600 + "x\n",
}
# Each hostile document again, after a legitimate !!omap (so there is another
# '!' in the text) and after a flow collection (so the fast path is not taken).
for key, text in list(HOSTILE.items()):
    if text and not text.startswith(("%", "---")):
        HOSTILE[f"{key}+omap"] = OMAP_SEQ + "- z: " + text.replace("\n", "\n  ") + "\n"
        HOSTILE[f"{key}+bang"] = "z: '!'\n" + text


def _outcome(raw: bytes, allow_omap: bool) -> tuple[str, Any]:
    try:
        return "ok", safe_yaml(raw, "doc", allow_omap=allow_omap)
    except DescriptorError as e:
        return "refused", e.message


def _unsupported(text: str, allow_omap: bool = False) -> Any:
    raise miniyaml.Unsupported


def _both(raw: bytes, allow_omap: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    fast = _outcome(raw, allow_omap)
    with monkeypatch.context() as m:
        m.setattr(safeyaml, "_scan_needless", lambda text, allow_omap: False)
        m.setattr(miniyaml, "load", _unsupported)
        scanned = _outcome(raw, allow_omap)
    return fast, scanned


@pytest.mark.parametrize("allow_omap", [True, False])
@pytest.mark.parametrize("key", sorted(HOSTILE))
def test_hostile_documents_get_the_scanned_verdict(
    key: str, allow_omap: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = HOSTILE[key].encode()
    fast, scanned = _both(raw, allow_omap, monkeypatch)
    assert fast == scanned


@pytest.mark.parametrize(
    "value",
    ["!!str 1", "!foo 1", "!!omapx [1]", "!!omapx\n    - a: 1", "!<tag:yaml.org,2002:str> 1"],
)
@pytest.mark.parametrize("others", [False, True])
def test_tags_are_refused_with_or_without_other_bangs(value: str, others: bool) -> None:
    doc = (OMAP_SEQ + "- z: 'x!'\n- t: " if others else "t: ") + value + "\n"
    for allow_omap in (True, False):
        with pytest.raises(DescriptorError, match="is not allowed"):
            safe_yaml(doc.encode(), "doc", allow_omap=allow_omap)


@pytest.mark.parametrize(
    "doc",
    [
        "%TAG ! tag:example.com,2000:\n---\na: 1\n",
        "%TAG !! tag:yaml.org,2002:\n--- !!omap\n- a: 'x!'\n",
        "%TAG !e! tag:example.com,2000:\n--- !!omap\n- a: 1\n",
    ],
)
def test_tag_directives_are_refused(doc: str) -> None:
    for allow_omap in (True, False):
        with pytest.raises(DescriptorError, match="%TAG directives are not allowed"):
            safe_yaml(doc.encode(), "doc", allow_omap=allow_omap)


def _real_files() -> list[Path]:
    files = sorted(COMPAT.glob("sigs/**/*.assert")) + sorted(COMPAT.glob("descriptors/*.yml"))
    return files[:40]


def test_real_files_parse_the_same_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    files = _real_files()
    if not files:
        pytest.skip("no compat data")
    for f in files:
        raw = f.read_bytes()
        allow = f.suffix == ".assert"
        fast, scanned = _both(raw, allow, monkeypatch)
        assert fast == scanned, f
        assert fast[0] == "ok", f


def test_real_asserts_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    asserts = sorted(COMPAT.glob("sigs/monero-linux-0.18/*/*/*.assert"))
    if not asserts:
        pytest.skip("no compat data")

    def no_scan(*args: object) -> None:
        raise AssertionError("the event scan ran")

    monkeypatch.setattr(safeyaml, "_scan_events", no_scan)
    for f in asserts:
        assert safe_yaml(f.read_bytes(), "assert", allow_omap=True)


def test_fast_path_refuses_to_compose_unbounded_nesting() -> None:
    # Deep enough to crash the C composer if it were composed unchecked.
    deep = ("- " * 30_000 + "x\n").encode()
    with pytest.raises(DescriptorError, match="nested deeper"):
        safe_yaml(deep, "doc")
    assert not safeyaml._scan_needless(deep.decode(), False)
