"""Several releases in one run (issue 12 items 1 and 3): a multi-platform
Bitcoin Core release from its real gitian.sigs tree, descriptors matched to
releases by the asserts they hold, --all, agreed checksums, the Markdown
report and the JSON of a run."""
# ruff: noqa: F811

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from gverify_fixtures import (
    BITCOIN_0212,
    COMPAT,
    Keys,
    console,
    extract,
    keys,  # noqa: F401 - fixture
    name_only,
    run_gverify,
    verdict_lines,
)

from gitian.manifest import report_fields

BAD = {"jonatack", "luke-jr"}  # no public key; signed after its key expired (test_gverify.py)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bitcoin-core/gitian.sigs' 0.21.2-* directories, as the repository keeps them."""
    return extract("bitcoin-core-0.21.2.tar.xz", tmp_path_factory.mktemp("gitian.sigs"))


#: -r for every platform of 0.21.2, in the release process's order.
RELS = [a for r in BITCOIN_0212 for a in ("-r", r)]


@pytest.fixture(scope="module")
def descs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The five descriptors, name only."""
    return name_only(tmp_path_factory.mktemp("descriptors"), sorted(set(BITCOIN_0212.values())))


def _signers(tree: Path, release: str) -> list[str]:
    return sorted(p.name for p in (tree / release).iterdir() if p.is_dir())


def _reports(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("Summary for ")]


def test_a_multi_platform_release_in_one_run(
    tree: Path,
    descs: list[str],
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r = run_gverify(["--no-markup", "-d", str(tree), *RELS, *descs], capsys, monkeypatch, keys.home)
    assert r.code == 1, r.err
    # One report per release, in the order asked, each matched with the
    # descriptor whose name its asserts carry.
    summaries = _reports(r.out)
    assert [s.split(":")[0] for s in summaries] == [
        f"Summary for {name} {rel}" for rel, name in BITCOIN_0212.items()
    ]
    for (rel, _), summary in zip(BITCOIN_0212.items(), summaries, strict=True):
        signers = _signers(tree, rel)
        n_ok = len(set(signers) - BAD)
        assert f": {len(signers)} signers, {n_ok} OK, 2 BAD SIGNATURE" in summary
    lines = verdict_lines(r.out)
    assert lines.count("jonatack: BAD SIGNATURE") == lines.count("luke-jr: BAD SIGNATURE") == 5
    assert r.out.rstrip().endswith(
        "Overall: FAILED: 5 of 5 release(s) failed: "
        + "; ".join(f"{n} {rel}" for rel, n in BITCOIN_0212.items())
        + "."
    )
    # The quorum the release process used: every platform passes.
    r = run_gverify(["-d", str(tree), *RELS, "--min-ok", "6", *descs], capsys, monkeypatch)
    assert r.code == 0, r.out
    assert r.out.rstrip().endswith("Overall: all 5 release(s) verified.")


def test_agreed_checksums_of_every_platform(
    tree: Path,
    descs: list[str],
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sums = tmp_path / "SHA256SUMS"
    args = ["-d", str(tree), *RELS, *descs, "--sha256sums", str(sums)]
    # Without a quorum, a release where not every signer is OK agrees on nothing.
    r = run_gverify(args, capsys, monkeypatch, keys.home)
    assert r.code == 1 and not sums.exists()
    assert "--sha256sums: not written: bitcoin-core-linux-0.21 0.21.2-linux" in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert not list(tmp_path.glob(".SHA256SUMS*"))  # nothing half-written
    r = run_gverify([*args, "--min-ok", "6"], capsys, monkeypatch)
    assert r.code == 0, r.err
    # What achow101 (OK everywhere) signed, release by release, each line once.
    want: list[str] = []
    for rel, name in BITCOIN_0212.items():
        raw = (tree / rel / "achow101" / f"{name}-build.assert").read_bytes()
        want += [
            ln for ln in report_fields(raw, "x")["out_manifest"].splitlines() if ln not in want
        ]
    assert sums.read_text() == "".join(f"{line}\n" for line in want)
    # The release's published checksum of the Linux x86_64 tarball.
    assert (
        "67aab7c3dd32f7eb0f3d8ecd66f2da31c4cb969aec4c6a57cb8b01d22fe891e0  "
        "bitcoin-0.21.2-x86_64-linux-gnu.tar.gz\n"
    ) in sums.read_text()
    # sha256sum itself reads the file.
    check = subprocess.run(
        ["sha256sum", "--check", "--ignore-missing", str(sums)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert "improperly formatted" not in check.stderr
    # A quorum nobody reached: refused, one line, the old file left alone.
    r = run_gverify([*args, "--min-ok", "8"], capsys, monkeypatch)
    assert r.code == 1
    assert r.err.strip() == (
        "gverify: error: --sha256sums: not written: bitcoin-core-osx-0.21 0.21.2-osx-unsigned: "
        "no group reached --min-ok 8 distinct keys (the most: 7)"
    )
    assert sums.read_text() == "".join(f"{line}\n" for line in want)


def test_json_and_markdown_cover_every_release(
    tree: Path,
    descs: list[str],
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    md = tmp_path / "report.md"
    r = run_gverify(
        ["-d", str(tree), *RELS, *descs, "--json", "--min-ok", "6", "--report", str(md)],
        capsys,
        monkeypatch,
        keys.home,
    )
    assert r.code == 0
    doc = json.loads(r.out)
    assert doc["verified"] is True and doc["exit_code"] == 0
    assert [(x["release"], x["package"]) for x in doc["releases"]] == list(BITCOIN_0212.items())
    for x in doc["releases"]:
        # The one-release object, as a single-release run prints it.
        assert {"signers", "groups", "reference", "verified", "layout", "explanations"} <= set(x)
        assert x["groups"][0]["distinct_keys"] == x["ok_distinct_keys"] >= 6
    text = md.read_text()
    assert text.startswith("# gverify report\n\nOverall: all 5 release(s) verified.\n")
    for rel, name in BITCOIN_0212.items():
        assert f"## `{name} {rel}`: verified" in text
    assert "| `jonatack` | BAD SIGNATURE |  | `no public key for key 796C4109063D4EAF" in text
    assert text.count("Agreed checksums:") == 5


def test_a_release_holding_none_of_the_descriptors_is_named(
    tree: Path,
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    descs = name_only(tmp_path / "d", ["bitcoin-core-win-0.21", "bitcoin-win-signer"])
    r = run_gverify(
        ["-d", str(tree), "-r", "0.21.2-linux", "-r", "0.21.2-win-signed", *descs],
        capsys,
        monkeypatch,
        keys.home,
    )
    assert r.code == 2 and r.out == ""
    assert r.err.splitlines()[0] == (
        f"gverify: error: {tree}/0.21.2-linux holds attestations for none of the descriptors "
        "(bitcoin-core-win-0.21, bitcoin-win-signer)"
    )


def test_a_release_holding_two_descriptors_gets_a_report_for_each(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in bitcoin-core/gitian.sigs 0.19.0rc1-linux, where one builder's assert
    carried another descriptor's name: each descriptor is judged on its own
    signers; alone, the classic rule (a signer without the files: missing)."""
    t = extract("bitcoin-core-0.21.2.tar.xz", tmp_path / "t")
    linux, win = "bitcoin-core-linux-0.21", "bitcoin-core-win-0.21"
    shutil.copytree(t / "0.21.2-win-unsigned" / "emzy", t / "0.21.2-linux" / "emzy-win")
    descs = name_only(tmp_path / "d", [linux, win])
    args = ["--no-markup", "-v", "-d", str(t), "-r", "0.21.2-linux", "--min-ok", "1"]
    r = run_gverify([*args, *descs], capsys, monkeypatch, keys.home)
    assert r.code == 1
    assert [s.split(":")[0] for s in _reports(r.out)] == [
        f"Summary for {linux} 0.21.2-linux",
        f"Summary for {win} 0.21.2-linux",
    ]
    first, second = r.out.split(f"Summary for {linux} 0.21.2-linux")
    assert "emzy-win" not in first and "10 signers, 8 OK" in second.splitlines()[0]
    # The win assert in the linux directory says which release it was made for.
    assert "emzy-win: MISMATCH" in second
    assert "release is '0.21.2-win-unsigned', expected '0.21.2-linux'" in second
    r = run_gverify([*args, descs[0]], capsys, monkeypatch)
    assert f"missing result at {t}/0.21.2-linux/emzy-win/{linux}-build.assert" in r.out


def test_without_destination_each_descriptor_has_its_own_tree(
    tree: Path,
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "home"
    for rel in ("0.21.2-linux", "0.21.2-win-unsigned"):
        shutil.copytree(tree / rel, home / "sigs" / BITCOIN_0212[rel] / rel)
    descs = name_only(
        tmp_path / "d", [BITCOIN_0212["0.21.2-linux"], BITCOIN_0212["0.21.2-win-unsigned"]]
    )
    args = ["--workdir", str(home), "--min-ok", "6", *descs]
    r = run_gverify(
        [*args, "-r", "0.21.2-linux", "-r", "0.21.2-win-unsigned"], capsys, monkeypatch, keys.home
    )
    assert r.code == 0, r.out + r.err
    assert len(_reports(r.out)) == 2
    r = run_gverify([*args, "--all"], capsys, monkeypatch)
    assert r.code == 0 and len(_reports(r.out)) == 2
    r = run_gverify([*args, "-r", "0.21.3-linux"], capsys, monkeypatch)
    assert r.code == 2 and "0.21.3-linux does not exist" in r.err


def test_all_finds_every_release(
    tree: Path,
    descs: list[str],
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tree / "gitian-keys").mkdir(exist_ok=True)  # not a release: holds no asserts
    r = run_gverify(
        ["--all", "-d", str(tree), "--min-ok", "6", *descs], capsys, monkeypatch, keys.home
    )
    assert r.code == 0, r.err
    assert sorted(s.split(":")[0] for s in _reports(r.out)) == sorted(
        f"Summary for {n} {rel}" for rel, n in BITCOIN_0212.items()
    )
    assert "Verifying" not in r.err  # no progress bar when standard error is not a terminal
    only_linux = name_only(tmp_path / "d1", ["bitcoin-core-linux-0.21"])
    r = run_gverify(["--all", "-d", str(tree), "--min-ok", "6", *only_linux], capsys, monkeypatch)
    assert [s.split(":")[0] for s in _reports(r.out)] == [
        "Summary for bitcoin-core-linux-0.21 0.21.2-linux"
    ]
    for bad in (["-r", "x"], ["--changed-since", "HEAD", "--keys-dir", str(tmp_path)]):
        r = run_gverify(["--all", "-d", str(tree), *bad, *descs], capsys, monkeypatch)
        assert r.code == 2 and "cannot be combined" in r.err
    none = name_only(tmp_path / "d2", ["zcash"])
    r = run_gverify(["--all", "-d", str(tree), *none], capsys, monkeypatch)
    assert r.code == 2 and "no release under" in r.err


def test_all_shows_a_progress_bar_on_a_terminal(
    tree: Path, descs: list[str], keys: Keys, tmp_path: Path
) -> None:
    args = ["--all", "-d", str(tree), *descs]
    env = {**os.environ, "GNUPGHOME": str(keys.home)}
    code, seen = console(args, env, terminal="stderr")
    assert code == 1
    assert b"Verifying" in seen and b"100%" in seen
    # Not on a terminal: test_all_finds_every_release.


def test_one_descriptor_many_releases_is_the_classic_rule(
    keys: Keys, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One descriptor: each -r is judged against it, and a missing one is an
    error listing the releases there are (as for a single release)."""
    sigs = COMPAT / "sigs" / "monero-linux-0.18"
    desc = COMPAT / "descriptors" / "v0.18.3.1-gitian-linux.yml"
    r = run_gverify(
        ["-d", str(sigs), "-r", "v0.18.3.1-linux", "-r", "v0.18.3.9-linux", str(desc)],
        capsys,
        monkeypatch,
        keys.home,
    )
    assert r.code == 2 and "v0.18.3.9-linux does not exist" in r.err
    assert "releases in" in r.err and "v0.18.3.1-linux" in r.err


def test_the_markdown_report_quotes_what_it_read(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signer directory named to inject Markdown/HTML into the issue the
    report is pasted into: only ever inside code spans, escaped."""
    from gverify_fixtures import copy_release, release_args

    sigs, rel, _, _ = copy_release("monero-win", tmp_path)
    evil = "x`|<img src=y>@alice](javascript:z)\n\u202e"
    (rel / "jeffro256").rename(rel / evil)
    md = tmp_path / "r.md"
    r = run_gverify(
        [*release_args("monero-win", sigs), "--report", str(md)], capsys, monkeypatch, keys.home
    )
    assert r.code == 0, r.out
    text = md.read_text()
    assert "| ``x`\\|<img src=y>@alice](javascript:z)\\x0a\\u202e`` | OK |" in text
    outside = re.sub(r"(`+)(.+?)\1", "", text)
    for bad in ("<img", "@alice", "](", "\u202e"):
        assert bad not in outside


def test_all_does_not_follow_a_release_link_out_of_the_tree(
    tree: Path,
    descs: list[str],
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    top = tmp_path / "sigs"
    top.mkdir()
    (top / "0.21.2-linux").symlink_to(tree / "0.21.2-linux")  # leads out of -d
    (top / "inside").symlink_to("0.21.2-win-unsigned")
    shutil.copytree(tree / "0.21.2-win-unsigned", top / "0.21.2-win-unsigned")
    r = run_gverify(
        ["--all", "-d", str(top), "--min-ok", "6", *descs], capsys, monkeypatch, keys.home
    )
    assert [s.split(":")[0] for s in _reports(r.out)] == [
        "Summary for bitcoin-core-win-0.21 0.21.2-win-unsigned",
        "Summary for bitcoin-core-win-0.21 inside",
    ]


def test_agreed_checksums_must_be_checksums(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every signer agrees on an out_manifest that is not sha256sum lines (signed
    by Mallory and Trent here): the release verifies, no checksums file."""
    from gitian.manifest import Report, dump_assert

    rel = tmp_path / "sigs" / "pkg" / "v1"
    report = Report(
        out_manifest="not a checksum\n",
        in_manifest="",
        base_manifests=(),
        cache_common_manifest="",
        cache_package_manifest="",
    )
    for who in ("mallory", "trent"):
        (rel / who).mkdir(parents=True)
        a = rel / who / "pkg-build.assert"
        a.write_bytes(dump_assert(report, "v1", "pkg", None))
        keys.sign(a, who)
    desc = name_only(tmp_path / "d", ["pkg"])
    sums = tmp_path / "SUMS"
    r = run_gverify(
        ["-d", str(rel.parent), "-r", "v1", *desc, "--sha256sums", str(sums)],
        capsys,
        monkeypatch,
        keys.home,
    )
    assert r.code == 1 and "Verified." in r.out and not sums.exists()
    assert "--sha256sums: not written: pkg v1: line 1 is not a sha256sum line" in r.err
