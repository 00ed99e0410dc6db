"""gverify explains a disagreement with what the asserts say went in (issue 13
item 4): Bitcoin Core 0.19.1-linux, where michagogo's base had gcc 8.4.0 and
the builders who agreed had 8.3.0 (bitcoin-core/gitian.sigs, as signed)."""
# ruff: noqa: F811

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gverify_fixtures import (
    EXPLAIN,
    Keys,
    keys,  # noqa: F401 - fixture
    name_only,
    run_gverify,
    verdict_lines,
)

from gitian.explain import Inputs, deb_package, explain, families, input_items
from gitian.manifest import report_fields

NAME = "bitcoin-core-linux-0.19"
GCC = ("gcc-8:amd64", "8.3.0-6ubuntu1~18.04.1", "8.4.0-1ubuntu1~18.04")


def _versions(signer: str, package: str) -> set[str]:
    """The versions of ``package`` in ``signer``'s base manifest, read here."""
    raw = (EXPLAIN / "0.19.1-linux" / signer / f"{NAME}-build.assert").read_bytes()
    ((_, text),) = report_fields(raw, signer)["base_manifests"]
    return {
        line.split("  ")[1].split("_")[1]
        for line in text.splitlines()
        if line.split("  ")[1].startswith(f"{package}_")
    }


def test_the_bases_of_the_two_groups_differ_in_their_compiler(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the asserts hold, read without gverify.
    assert _versions("michagogo", "gcc-8") == {GCC[2]}
    for s in ("achow101", "fanquake", "laanwj"):
        assert _versions(s, "gcc-8") == {GCC[1]}
    desc = name_only(tmp_path, [NAME])
    args = ["--no-markup", "-d", str(EXPLAIN), "-r", "0.19.1-linux", *desc]
    r = run_gverify(["-v", *args], capsys, monkeypatch, keys.home)
    assert r.code == 1
    assert verdict_lines(r.out) == [
        "achow101: OK",
        "fanquake: OK",
        "laanwj: OK",
        "michagogo: MISMATCH",
    ]
    summary = r.out[r.out.index("Summary for") :].splitlines()
    assert summary[3].endswith(
        "(michagogo) was built from other inputs (the reference group's -> theirs):"
    )
    # The largest family first: the native gcc 8, 8.3.0 -> 8.4.0.
    assert summary[4].startswith(f"    package (bionic-amd64) {GCC[1]} -> {GCC[2]}: cpp-8:amd64, ")
    assert f" {GCC[0]}, " in summary[4]
    assert any(
        ln.startswith(
            "    package (bionic-amd64) 7.4.0-1ubuntu1~18.04.1 -> 7.5.0-3ubuntu1~18.04: "
            "cpp-7:amd64, "
        )
        for ln in summary
    )
    assert any(ln.startswith("    (") and "vary within the groups too" in ln for ln in summary)
    # Only with -v.
    r = run_gverify(args, capsys, monkeypatch)
    assert "built from other inputs" not in r.out
    r = run_gverify(["--json", *args], capsys, monkeypatch)
    (e,) = json.loads(r.out)["explanations"]
    assert e["signers"] == ["michagogo"] and e["varying_within_groups"] > 0
    by_item = {d["item"]: d for d in e["differences"]}
    assert by_item[GCC[0]] == {
        "kind": "package",
        "where": "bionic-amd64",
        "item": GCC[0],
        "reference": [GCC[1]],
        "group": [GCC[2]],
    }
    # A package only michagogo's base had: the reference side is "none".
    assert by_item["libnetplan0:amd64"]["reference"] == [None]
    md = tmp_path / "r.md"
    run_gverify([*args, "--report", str(md)], capsys, monkeypatch)
    text = md.read_text()
    assert "What went in differently for `michagogo`" in text
    assert f"- `package (bionic-amd64) {GCC[1]} -> {GCC[2]}: cpp-8:amd64, " in text
    assert "Disagreed with the reference (`achow101`):" in text
    assert "- `michagogo`: changed: `bitcoin-0.19.1-aarch64-linux-gnu-debug.tar.gz`" in text


def test_deb_file_names() -> None:
    assert deb_package("gcc-9_9.3.0-10ubuntu2_amd64.deb") == ("gcc-9:amd64", "9.3.0-10ubuntu2")
    assert deb_package("automake_1%3a1.15.1-3ubuntu2_all.deb") == (
        "automake:all",
        "1:1.15.1-3ubuntu2",
    )
    assert deb_package("odd.deb") == ("odd.deb", None)
    assert deb_package("a_b_c_d.deb") == ("a_b_c_d.deb", None)
    assert deb_package("notadeb_1_amd64") == ("notadeb_1_amd64", None)


def test_inputs_commits_and_files() -> None:
    """The in_manifest's git: entries run together (as gbuild writes them)."""
    a = "aa  pkg-desc.yml\nbb  src.tar.gz\ngit:" + "1" * 40 + " bitcoingit:" + "2" * 40 + " sig"
    assert input_items(a) == {
        "pkg-desc.yml": "aa",
        "src.tar.gz": "bb",
        "git:bitcoin": "1" * 40,
        "git:sig": "2" * 40,
    }
    b = a.replace("1" * 40, "3" * 40).replace("bb  src", "cc  src")
    e = explain("d", {"x": Inputs(a, ()), "y": Inputs(a, ())}, {"z": Inputs(b, ())})
    assert [(d.item, d.reference, d.other) for d in e.differences] == [
        ("git:bitcoin", ("1" * 40,), ("3" * 40,)),
        ("src.tar.gz", ("bb",), ("cc",)),
    ]
    assert e.varying == 0 and len(families(e.differences)) == 2


def test_only_what_tells_the_groups_apart_is_listed() -> None:
    def base(*debs: str) -> Inputs:
        return Inputs("", (("bionic-amd64", "".join(f"00  {d}\n" for d in debs)),))

    ref = {
        "a": base("gcc_8.3_amd64.deb", "tzdata_2019_all.deb", "old_1_all.deb"),
        "b": base("gcc_8.3_amd64.deb", "tzdata_2020_all.deb"),
    }
    other = {"c": base("gcc_8.3_amd64.deb", "gcc_8.4_amd64.deb", "tzdata_2020_all.deb")}
    e = explain("d", ref, other)
    # gcc: 8.4 is only theirs (8.3, in every base, is not different);
    # tzdata and old vary inside the reference group: counted, not listed.
    assert [(d.item, d.reference, d.other) for d in e.differences] == [("gcc:amd64", (), ("8.4",))]
    assert e.varying == 2
