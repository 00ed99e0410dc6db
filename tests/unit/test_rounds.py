"""gbuild --rounds / --vary: narrowing, the variations' commands, diffoscope's
summaries, and the rounds flow against the local target of test_build.

Real targets (every variation caught on bubblewrap, the example on LXC) are in
tests/integration/test_determinism.py.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gitian import diffoscope, variations
from gitian.build import BuildOptions
from gitian.buildscript import ScriptParams, build_script, script_offset
from gitian.errors import UsageError
from gitian.home import Home, target_bin
from gitian.manifest import read_report
from gitian.rounds import (
    Cause,
    NotDeterministic,
    RoundBuilder,
    build_rounds,
    check_options,
    differing,
    narrow,
)
from gitian.targets.base import TargetConfig
from gitian.targets.bwrap import BwrapTarget
from gitian.variations import Applied, Variation
from tests.conftest import require_tool
from tests.unit.test_build import World
from tests.unit.test_build_cli import _main


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


ROOT = Path(__file__).resolve().parents[2]
V = Variation


# -- narrowing ---------------------------------------------------------------------


class Fake:
    """A build whose files depend on variations as ``rules`` say: file ->
    function of the varied set (True: the file differs from round 1)."""

    def __init__(self, rules: dict[str, Any]) -> None:
        self.rules = rules
        self.builds: list[frozenset[Variation]] = []

    def __call__(self, vs: frozenset[Variation]) -> set[str]:
        self.builds.append(vs)
        return {f for f, rule in self.rules.items() if rule(vs)}


ALL = variations.ALL


def test_one_variation_per_file_is_named_with_one_build_per_variation() -> None:
    fake = Fake({"host.txt": lambda vs: V.HOSTNAME in vs, "date.txt": lambda vs: V.TIME in vs})
    causes = narrow(ALL, ["date.txt", "host.txt"], fake)
    assert causes == {
        "host.txt": Cause("each", frozenset({V.HOSTNAME})),
        "date.txt": Cause("each", frozenset({V.TIME})),
    }
    # one build per variation: no plain rebuild, no others
    assert len(fake.builds) == len(ALL) and set(fake.builds) == {frozenset({v}) for v in ALL}
    assert "caused by hostname" in causes["host.txt"].describe()


def test_a_file_two_variations_change_each_on_its_own() -> None:
    fake = Fake({"stamp": lambda vs: bool(vs & {V.TZ, V.TIME})})
    assert narrow(ALL, ["stamp"], fake) == {"stamp": Cause("each", frozenset({V.TZ, V.TIME}))}


def test_a_file_that_differs_whatever_varies_is_the_build_itself() -> None:
    fake = Fake({"random": lambda vs: True})
    causes = narrow(ALL, ["random"], fake)
    assert causes == {"random": Cause("unvaried")}
    assert frozenset() in fake.builds  # the plain rebuild told it
    assert "nothing varied" in causes["random"].describe()


def test_only_one_variation_asked_for_a_plain_rebuild_decides() -> None:
    fake = Fake({"f": lambda vs: V.UMASK in vs})
    assert narrow(frozenset({V.UMASK}), ["f"], fake) == {"f": Cause("each", frozenset({V.UMASK}))}
    assert fake.builds == [frozenset()]  # the varied round itself is not built again
    fake = Fake({"f": lambda vs: True})
    assert narrow(frozenset({V.UMASK}), ["f"], fake) == {"f": Cause("unvaried")}


def test_variations_that_act_only_together_are_named_as_a_set() -> None:
    # differs only when both the locale and the time zone vary
    fake = Fake({"f": lambda vs: {V.LOCALE, V.TZ} <= vs})
    causes = narrow(ALL, ["f"], fake)
    assert causes == {"f": Cause("together", frozenset({V.LOCALE, V.TZ}))}
    assert causes["f"].describe() == (
        "caused by tz, locale together (no single variation changes it)"
    )
    assert frozenset() not in fake.builds
    assert len(set(fake.builds)) == 2 * len(ALL)  # singles, then all-but-one


def test_nothing_varied_every_file_is_the_build_itself() -> None:
    fake = Fake({})
    assert narrow(frozenset(), ["a"], fake) == {"a": Cause("unvaried")}
    assert fake.builds == []


def test_differing_lists_changed_and_one_sided_files() -> None:
    assert differing({"a": "1", "b": "2"}, {"a": "1", "b": "3", "c": "4"}) == ["b", "c"]


# -- the variations ------------------------------------------------------------------


def test_parse_and_names() -> None:
    assert variations.parse("") == ALL
    assert variations.parse("tz, Locale") == {V.TZ, V.LOCALE}
    with pytest.raises(UsageError, match="unknown variation 'bogus'"):
        variations.parse("tz,bogus")
    assert variations.names([V.TIME, V.TZ]) == "tz, time"


def test_parse_setup_keeps_what_applies_and_says_why_not() -> None:
    text = (
        "ok locale fr_CH.UTF-8\n"
        "no hostname root on this target cannot make a UTS namespace (denied)\n"
        "ok time /t/libfaketime.so.1\n"
        "ok dirorder /t/disorderfs /t/lib:/t/usr/lib\n"
    )
    a = variations.parse_setup(text, ALL)
    assert a.variations == ALL - {V.HOSTNAME}
    assert a.refused == ((V.HOSTNAME, "root on this target cannot make a UTS namespace (denied)"),)
    assert (a.locale, a.faketime_lib) == ("fr_CH.UTF-8", "/t/libfaketime.so.1")
    assert (a.disorderfs, a.fuse_libs) == ("/t/disorderfs", "/t/lib:/t/usr/lib")
    # a checked variation vary-setup is silent about is not applied
    a = variations.parse_setup("", frozenset({V.TIME, V.TZ}))
    assert a.variations == {V.TZ} and a.refused[0][0] == V.TIME


@pytest.fixture
def bwrap(tmp_path: Path) -> BwrapTarget:
    return BwrapTarget(
        TargetConfig(home=Home(tmp_path), suite="bookworm", arch="amd64", distro="debian")
    )


def test_command_applies_each_variation(bwrap: BwrapTarget) -> None:
    applied = Applied(ALL, locale="fr_CH.UTF-8", faketime_lib="/t/ft.so", disorderfs="/t/dfs",
                      fuse_libs="/t/lib")  # fmt: skip
    c = variations.command(bwrap, applied, "linux64", 2)
    assert c.argv[: c.argv.index("--") + 1] == [
        "unshare", "--uts", "--mount", "--propagation", "private", "--"
    ]  # fmt: skip
    body = c.argv[c.argv.index("-c") + 1]
    assert body == (target_bin() / "vary-build").read_text()
    user_env = c.argv[c.argv.index("vary-build") + 1 :]
    assert "TZ=GMT-14" in user_env and "LANGUAGE=fr_CH:fr" in user_env
    assert {"LD_PRELOAD=/t/ft.so", "FAKETIME=+373d", "HOME=/home/debian"} <= set(user_env)
    assert c.env == {
        "GITIAN_VARY_USER": "debian",
        "GITIAN_VARY_HOME": "/home/debian",
        "GITIAN_VARY_PERSONALITY": "linux64",
        "GITIAN_VARY_HOSTNAME": "gitian-varied",
        "GITIAN_VARY_DOMAINNAME": "varied.invalid",
        "GITIAN_VARY_PATH": "/home/gitian-varied-path/debian",
        "GITIAN_VARY_DISORDERFS": "/t/dfs",
        "GITIAN_VARY_LIBS": "/t/lib",
        "GITIAN_VARY_CPUS": "1",
    }


def test_command_without_namespaces_runs_no_unshare(bwrap: BwrapTarget) -> None:
    c = variations.command(bwrap, Applied(frozenset({V.TZ, V.PROCS})), "linux64", 1)
    assert c.argv[:2] == ["bash", "-c"]
    assert "GITIAN_VARY_CPUS" not in c.env  # 1 processor varies to 2: nothing to take away
    assert not any(k in c.env for k in ("GITIAN_VARY_HOSTNAME", "GITIAN_VARY_PATH"))


def test_varied_build_script_changes_only_its_lines() -> None:
    p = ScriptParams(name="n", bits=64, num_procs=2, memory_mib=2000,
                     reference_datetime="2024-01-01 00:00:00", script="make\n")  # fmt: skip
    varied = variations.script_params(p, Applied(ALL, locale="fr_CH.UTF-8"))
    a, b = build_script(p).splitlines(), build_script(varied).splitlines()
    assert [(x, y) for x, y in zip(a, b, strict=True) if x != y] == [
        ("export LANG='en_US.UTF-8'", "export LANG='fr_CH.UTF-8'"),
        ("export LC_ALL='en_US.UTF-8'", "export LC_ALL='fr_CH.UTF-8'"),
        ("umask 002", "umask 022"),
        ("MAKEOPTS=(-j2)", "MAKEOPTS=(-j1)"),
        ("NUM_PROCS=2", "NUM_PROCS=1"),
    ]
    assert script_offset(varied) == script_offset(p)  # errors still name the right line


def test_target_scripts_are_valid_bash() -> None:
    for name in ("vary-setup", "vary-build"):
        r = subprocess.run(["bash", "-n", target_bin() / name], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


# -- diffoscope --------------------------------------------------------------------

NESTED = {
    "source1": "a/x.tar.gz",
    "details": [
        {"source1": "x.tar", "details": [
            {"source1": "file list",
             "unified_diff": "@@ -2,3 +2,3 @@\n ctx\n-old line\n+new line\n"},
        ]},
    ],
}  # fmt: skip


def test_first_difference_names_the_member_and_line() -> None:
    assert diffoscope.first_difference(NESTED) == (
        "in x.tar / file list: line 2: 'old line' -> 'new line'"
    )
    assert diffoscope.first_difference({"comments": ["Format-specific differences"]}) == (
        "Format-specific differences"
    )
    long = {"unified_diff": "@@ -1 +1 @@\n-" + "x" * 500 + "\n+y\n"}
    assert len(diffoscope.first_difference(long)) < 150


def test_compare_keeps_reports_and_summarises_each_file(tmp_path: Path) -> None:
    require_tool("diffoscope")
    a, b = tmp_path / "a", tmp_path / "b"
    for d, host in ((a, "gitian"), (b, "other")):
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "host.txt").write_text(f"{host}\n")
        (d / "same").write_text("same\n")
    report = diffoscope.compare(a, b, ["sub/host.txt"], tmp_path / "r" / "1-vs-2",
                                ("round-1", "round-2"))  # fmt: skip
    assert report.error == ""
    assert report.summaries == {"sub/host.txt": "line 1: 'gitian' -> 'other'"}
    assert "round-2/sub/host.txt" in report.text.read_text()
    assert report.html.exists()
    assert json.loads(report.text.with_suffix(".json").read_text())["details"]


# -- the rounds flow -----------------------------------------------------------------


def rounds(world: World, script: str, count: int = 2, **opts: Any) -> Any:
    builder = RoundBuilder(world.desc(script=script), world.home, BuildOptions(quiet=True, **opts),
                           world.make, out=io.StringIO())  # fmt: skip
    return build_rounds(builder, count, frozenset())


def test_identical_rounds_write_the_result_and_keep_each_round(world: World) -> None:
    res = rounds(world, 'echo same > "$OUTDIR/a"', count=3)
    h = world.home
    assert read_report(res.result_file).out_manifest.endswith("  a\n")
    assert (h.build / "out" / "a").read_text() == "same\n"
    for n in ("1", "2", "3"):
        assert (h.var / "rounds" / n / "out" / "a").read_text() == "same\n"
        assert (h.var / "rounds" / n / "bookworm-amd64.build.log").exists()
    assert sum(1 for e in world.events if e[0] == "reset") == 3  # a fresh target each


def test_differing_rounds_write_no_result_and_explain(world: World) -> None:
    h = world.home
    with pytest.raises(NotDeterministic) as e:
        rounds(world, 'echo same > "$OUTDIR/a"; date +%N > "$OUTDIR/b"')
    msg = e.value.message
    assert msg.splitlines()[0] == (
        "not deterministic: round 2 differs from round 1 in 1 of 2 output files"
    )
    assert "  b: differs even with nothing varied" in msg
    assert not h.result_file("demo").exists()
    assert not (h.build / "out").exists()
    if diffoscope.available():
        assert "first difference: line 1:" in msg
        assert (h.var / "rounds" / "diffoscope" / "1-vs-2.html").exists()
    else:
        assert "diffoscope is not installed" in msg


def test_options_rounds_cannot_take() -> None:
    with pytest.raises(UsageError, match="-i"):
        check_options(BuildOptions(skip_image=True), 2)
    with pytest.raises(UsageError, match="--skip-cleanup"):
        check_options(BuildOptions(skip_cleanup=True), 2)


# -- the command line --------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vary", "x.yml"], "--vary needs --rounds 2 or more"),
        (["--rounds", "2", "--vary", "/no/such.yml"], "no such descriptor"),
        (["--rounds", "2", "--vary=tz,bogus", "x.yml"], "unknown variation 'bogus'"),
        (["--rounds", "2", "-i", "/no/such.yml"], "it cannot take -i"),
        (["--rounds", "2", "--vary"], "missing argument DESCRIPTOR"),
    ],
)
def test_command_line(tmp_path: Path, args: list[str], message: str) -> None:
    r = _main(args, tmp_path)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
