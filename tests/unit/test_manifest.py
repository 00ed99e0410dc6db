"""Result and assert files: reader, byte-exact writer, and the manifest texts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitian.errors import InputError
from gitian.manifest import (
    Report,
    dump_assert,
    dump_report,
    dump_result,
    in_manifest_text,
    load_report,
    manifest_lines,
    read_report,
    write_report,
)

GOLDEN = [
    ("ex1-gbuild-res.yml", "ex1-gbuild-gsign.assert"),
    ("ex2-gbuild-res-signer.yml", "ex2-gbuild-gsign-signer.assert"),
    ("ex3-gbuild-res-edge.yml", "ex3-gbuild-gsign-edge.assert"),
    ("ex4-gbuild-res-empty-base.yml", "ex4-gbuild-gsign-empty-base.assert"),
]


@pytest.mark.parametrize(("res", "asrt"), GOLDEN)
def test_golden_result_and_assert_bytes(compat: Path, res: str, asrt: str) -> None:
    res_raw = (compat / "yaml" / res).read_bytes()
    assert_raw = (compat / "yaml" / asrt).read_bytes()
    result = load_report(res_raw, res)
    assert not result.has_assert_fields
    assert dump_result(result) == res_raw
    expected = load_report(assert_raw, asrt)
    assert expected.has_assert_fields and expected.type == "build"
    assert expected.as_result() == result
    out = dump_assert(result, expected.release or "", expected.name or "", expected.optionals)
    assert out == assert_raw
    assert dump_report(expected) == assert_raw
    assert (
        dump_report(
            result.as_assert(expected.release or "", expected.name or "", expected.optionals)
        )
        == assert_raw
    )


def test_golden_details(compat: Path) -> None:
    ex2 = load_report((compat / "yaml" / "ex2-gbuild-res-signer.yml").read_bytes(), "ex2")
    assert ex2.in_manifest.endswith(
        " signaturegit:b084cbbf44d5330448ffce0c7d118f75781b64bd signapple"
    )
    assert ex2.cache_common_manifest == ""
    ex3 = load_report((compat / "yaml" / "ex3-gbuild-gsign-edge.assert").read_bytes(), "ex3")
    assert ex3.release == "22.0" and ex3.optionals == ["opt-a", "opt-b"]
    assert [k for k, _ in ex3.base_manifests] == ["bionic-amd64", "bionic-i386"]
    assert ex3.cache_package_manifest.endswith("#hash'quote: colon.tar.gz\n")
    ex4 = load_report((compat / "yaml" / "ex4-gbuild-gsign-empty-base.assert").read_bytes(), "e")
    assert ex4.base_manifests == () and ex4.optionals == [] and ex4.release == "1.0"


def test_every_real_assert_loads(compat: Path) -> None:
    paths = sorted((compat / "sigs").glob("*/*/*/*.assert"))
    assert len(paths) >= 30
    styles = set()
    for p in paths:
        raw = p.read_bytes()
        r = load_report(raw, str(p))
        assert r.out_manifest and r.in_manifest and r.base_manifests
        assert r.name == p.parts[-4] and r.release == p.parts[-3] and r.type == "build"
        assert r.optionals is None
        styles.add(raw.endswith(b"- optionals: \n"))
    assert styles == {True, False}  # both null styles occur and both load


def test_the_three_optionals_styles_read_the_same() -> None:
    head = b"--- !!omap\n- out_manifest: |\n    a  b\n- in_manifest: ''\n"
    for tail in (b"- optionals: \n", b"- optionals:\n", b"- optionals: \n...\n"):
        r = load_report(head + tail, "x")
        assert r.out_manifest == "a  b\n" and r.optionals is None and r.has_assert_fields


def test_plain_mapping_and_missing_optional_keys() -> None:
    r = load_report(b"out_manifest: ''\nin_manifest: 'x'\n", "old.yml")
    assert r == Report("", "x")


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"", "empty"),
        (b"- a\n- b\n", "mapping or !!omap"),
        (b"just text\n", "not a string"),
        (b"--- !!omap\n- in_manifest: ''\n", "no 'out_manifest'"),
        (b"--- !!omap\n- out_manifest: 1\n", "'out_manifest' must be a string"),
        (b"--- !!omap\n- out_manifest: ''\n- out_manifest: ''\n", "appears twice"),
        (b"--- !!omap\n- out_manifest: ''\n- base_manifests: [1]\n", "base_manifests"),
        (b"--- !!omap\n- out_manifest: ''\n- base_manifests: {a: 1}\n", "base_manifests/a"),
        (b"--- !!omap\n- out_manifest: !!python/object:os.system ''\n", "tag"),
        (b"--- !ruby/object:Foo\nout_manifest: ''\n", "tag"),
        (b"out_manifest: [\n", "invalid YAML"),
        (b"\xff\xfe", "UTF-8"),
        (b"a: &a [*a, *a]\nout_manifest: ''\n", "alias"),
    ],
)
def test_bad_files_give_one_line(raw: bytes, needle: str) -> None:
    with pytest.raises(InputError) as e:
        load_report(raw, "sigs/x/1/alice/x-build.assert")
    msg = e.value.message
    assert "\n" not in msg
    assert needle in msg, msg
    assert "x-build.assert" in msg, msg


def test_read_report_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_report(tmp_path / "nope-res.yml")


def test_write_report_is_atomic(tmp_path: Path, compat: Path) -> None:
    src = compat / "yaml" / "ex1-gbuild-res.yml"
    target = tmp_path / "result" / "x-res.yml"
    data = dump_result(read_report(src))
    write_report(target, data)
    assert target.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == ["x-res.yml"]


def test_in_manifest_git_entries_run_together(compat: Path) -> None:
    ex2 = load_report((compat / "yaml" / "ex2-gbuild-res-signer.yml").read_bytes(), "ex2")
    text = in_manifest_text(
        "cd99b167c83df17f0cf3450f574d38b9959358d910ec1c52c2582d38f9c020da",
        "bitcoin-dmg-signer",
        [],
        [
            ("f4a4fc641378f2b2547e7c7e306262b0fe7bc64a", "signature"),
            ("b084cbbf44d5330448ffce0c7d118f75781b64bd", "signapple"),
        ],
    )
    assert text == ex2.in_manifest
    ex1 = load_report((compat / "yaml" / "ex1-gbuild-res.yml").read_bytes(), "ex1")
    assert (
        in_manifest_text(
            "6fa795f605c0ae27cc8599714279f7f2d5043e9e781f7b1c69c5521476b87537",
            "bitcoin-core-linux-0.21",
            [],
            [("194b9b8792d9b0798fdb570b79fa51f1d1f5ebaf", "bitcoin")],
        )
        == ex1.in_manifest
    )
    # files: lines come between the descriptor line and the git entries
    assert in_manifest_text("d" * 64, "p", [("f" * 64, "a.tar.gz")], [("c" * 40, "src")]) == (
        f"{'d' * 64}  p-desc.yml\n{'f' * 64}  a.tar.gz\ngit:{'c' * 40} src"
    )
    assert in_manifest_text("d" * 64, "p", [], []) == f"{'d' * 64}  p-desc.yml\n"


def test_manifest_lines() -> None:
    assert manifest_lines([]) == ""
    assert manifest_lines([("a" * 64, "x y"), ("b" * 64, "sub/z")]) == (
        f"{'a' * 64}  x y\n{'b' * 64}  sub/z\n"
    )


def test_real_assert_in_manifest_is_reproduced(compat: Path) -> None:
    desc = compat / "descriptors" / "v0.18.3.1-gitian-linux.yml"
    sample = next((compat / "sigs" / "monero-linux-0.18").glob("*/*/*.assert"))
    r = load_report(sample.read_bytes(), str(sample))
    import hashlib

    sha = hashlib.sha256(desc.read_bytes()).hexdigest()
    commit, directory = r.in_manifest.split("git:", 1)[1].split(" ", 1)
    assert in_manifest_text(sha, "monero-linux-0.18", [], [(commit, directory)]) == r.in_manifest


# -- round trip ------------------------------------------------------------

_chars = st.characters(blacklist_categories=("Cs",))
_free = st.text(_chars, max_size=120)
_lines = st.lists(
    st.text(
        st.sampled_from(list("ab #':\"-|>?,[]{}&*!%@`~ \t\u00e9\u4e2d\U0001f600xyz0189.")),
        max_size=110,
    ),
    max_size=6,
).map("\n".join)
_text = st.one_of(_free, _lines, _lines.map(lambda s: s + "\n"), _lines.map(lambda s: s + "\n\n"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    _text,
    _text,
    st.lists(st.tuples(_text, _text), max_size=3, unique_by=lambda t: t[0]),
    _text,
    _text,
)
def test_round_trip(o: str, i: str, bases: list[tuple[str, str]], c1: str, c2: str) -> None:
    r = Report(o, i, tuple(bases), c1, c2)
    assert load_report(dump_result(r), "rt") == r


@settings(max_examples=80, deadline=None)
@given(_text, st.one_of(st.none(), st.lists(_text, max_size=3)), _text)
def test_round_trip_assert(text: str, optionals: object, release: str) -> None:
    r = Report(text, text)
    back = load_report(dump_assert(r, release, "name", optionals), "rt")
    assert back.as_result() == r
    assert (back.release, back.name, back.type, back.optionals) == (
        release,
        "name",
        "build",
        optionals,
    )


def test_dump_report_reproduces_copies_of_the_goldens(tmp_path: Path, compat: Path) -> None:
    # the compat tree is read-only for tests: work on copies
    dst = tmp_path / "yaml"
    shutil.copytree(compat / "yaml", dst)
    for p in dst.iterdir():
        r = read_report(p)
        assert dump_report(r) == p.read_bytes()


def test_real_asserts_are_reproduced_except_the_old_null_style(compat: Path) -> None:
    # Re-dumping each real assert gives its bytes back, except that older
    # libyaml wrote a null as "optionals: " (trailing space) and we write the
    # newest style.  (Verification never re-dumps: signatures cover the file.)
    for p in sorted((compat / "sigs").glob("*/*/*/*.assert")):
        raw = p.read_bytes()
        want = raw.replace(b"- optionals: \n", b"- optionals:\n")
        assert dump_report(load_report(raw, str(p))) == want, p


def test_undecodable_file_names_are_refused_not_written() -> None:
    # gbuild reads manifests with surrogateescape; YAML cannot carry those bytes.
    bad = "a" * 64 + "  caf\udce9.tar.gz\n"
    with pytest.raises(InputError) as e:
        dump_result(Report(bad, ""))
    assert "out_manifest" in e.value.message and "caf\\xe9.tar.gz" in e.value.message
    assert "\n" not in e.value.message
