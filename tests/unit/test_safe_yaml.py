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


def test_real_files_parse() -> None:
    files = sorted(COMPAT.glob("sigs/**/*.assert")) + sorted(COMPAT.glob("descriptors/*.yml"))
    assert files
    for f in files:
        assert safe_yaml(f.read_bytes(), "doc", allow_omap=f.suffix == ".assert"), f


def test_unbounded_nesting_is_refused_before_composing() -> None:
    # Deep enough to crash the C composer if it were composed unchecked.
    deep = ("- " * 30_000 + "x\n").encode()
    with pytest.raises(DescriptorError, match="nested deeper"):
        safe_yaml(deep, "doc")
