"""safe_yaml refuses tags, %TAG directives and unbounded nesting, and reads
every real file."""

from __future__ import annotations

import pytest
from testdata import COMPAT

from gitian.errors import DescriptorError
from gitian.safeyaml import safe_yaml

OMAP_SEQ = "--- !!omap\n- a: 1\n- b: |\n    x\n"


@pytest.mark.parametrize(
    "value",
    ["!!str 1", "!foo 1", "!!omapx [1]", "!!omapx\n    - a: 1", "!<tag:yaml.org,2002:str> 1"],
)
@pytest.mark.parametrize("others", [False, True])
def test_tags_are_refused_with_or_without_other_bangs(value: str, others: bool) -> None:
    doc = (OMAP_SEQ + "- z: 'x!'\n- t: " if others else "t: ") + value + "\n"
    for psych in (True, False):
        with pytest.raises(DescriptorError, match="is not allowed"):
            safe_yaml(doc.encode(), "doc", psych=psych)


@pytest.mark.parametrize(
    "doc",
    [
        "%TAG ! tag:example.com,2000:\n---\na: 1\n",
        "%TAG !! tag:yaml.org,2002:\n--- !!omap\n- a: 'x!'\n",
        "%TAG !e! tag:example.com,2000:\n--- !!omap\n- a: 1\n",
    ],
)
def test_tag_directives_are_refused(doc: str) -> None:
    for psych in (True, False):
        with pytest.raises(DescriptorError, match="%TAG directives are not allowed"):
            safe_yaml(doc.encode(), "doc", psych=psych)


def test_real_files_parse() -> None:
    files = sorted(COMPAT.glob("sigs/**/*.assert")) + sorted(COMPAT.glob("descriptors/*.yml"))
    assert files
    for f in files:
        assert safe_yaml(f.read_bytes(), "doc", psych=f.suffix == ".assert"), f


def test_unbounded_nesting_is_refused_before_composing() -> None:
    # Deep enough to crash the C composer if it were composed unchecked.
    deep = ("- " * 30_000 + "x\n").encode()
    with pytest.raises(DescriptorError, match="nested deeper"):
        safe_yaml(deep, "doc")


def test_psych_dialects_read_as_psych_reads_them() -> None:
    """Older Psych wrote ``!omap`` and quoted scalars with the non-specific tag
    ``!``, which YAML (and Psych) read as a plain string - ``! '12'`` is the
    string "12", not PyYAML's integer."""
    doc = b"--- !omap \n- a: ! '12'\n- b: !omap\n  - c: ! \"x\\n\"\n- d: '1.5'\n"
    assert safe_yaml(doc, "doc", psych=True) == [
        ("a", "12"),
        ("b", [("c", "x\n")]),
        ("d", "1.5"),
    ]
    assert safe_yaml(b"--- !!omap\n- a: !!omap []\n", "doc", psych=True) == [("a", [])]


@pytest.mark.parametrize(
    "doc",
    [
        "--- !omap\n- a: ! 12\n",  # the non-specific tag on a plain scalar: never written
        "--- !omap\n- a: ! [1]\n",
        "a: !omap {b: 1}\n",  # !omap on a mapping
        "--- !omap\n- a: !str x\n",
    ],
)
def test_other_tags_stay_refused(doc: str) -> None:
    with pytest.raises(DescriptorError, match="is not allowed"):
        safe_yaml(doc.encode(), "doc", psych=True)


def test_psych_tags_only_in_result_and_assert_files() -> None:
    for doc in ("--- !omap\n- a: 1\n", "a: ! 'x'\n"):
        with pytest.raises(DescriptorError, match="is not allowed"):
            safe_yaml(doc.encode(), "doc")
