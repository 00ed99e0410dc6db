"""var/build-script: the classic text, line for line."""

from __future__ import annotations

from gitian.buildscript import ScriptParams, build_script


def test_plain_script_is_the_classic_text() -> None:
    text = build_script(
        ScriptParams(
            name="pkg",
            bits=64,
            num_procs=2,
            memory_mib=2000,
            reference_datetime="2017-01-01 00:00:00",
            script="make\n",
        )
    )
    assert text == (
        "#!/bin/bash\n"
        "set -e\n"
        "export LANG='en_US.UTF-8'\n"
        "export LC_ALL='en_US.UTF-8'\n"
        "umask 002\n"
        "export OUTDIR=$HOME/out\n"
        "GBUILD_BITS=64\n"
        "MAKEOPTS=(-j2)\n"
        "NUM_PROCS=2\n"
        "NUM_MEM=2000\n"
        "\n"
        "\n"
        "REFERENCE_DATETIME='2017-01-01 00:00:00'\n"
        "REFERENCE_DATE='2017-01-01'\n"
        "REFERENCE_TIME='00:00:00'\n"
        "\n"
        "cd build\n"
        "make\n"
    )


def test_cache_variables_and_remotes_in_order() -> None:
    text = build_script(
        ScriptParams(
            name="bitcoin-linux",
            bits=32,
            num_procs=8,
            memory_mib=4096,
            reference_datetime="2020-05-06 07:08:09",
            script="echo hi",  # no trailing newline: puts adds one
            enable_cache=True,
            remote_dirs=["bitcoin", "other"],
        )
    )
    lines = text.split("\n")
    assert lines[6:16] == [
        "GBUILD_BITS=32",
        "GBUILD_CACHE_ENABLED=1",
        "GBUILD_PACKAGE_CACHE=$HOME/cache/bitcoin-linux",
        "GBUILD_COMMON_CACHE=$HOME/cache/common",
        "MAKEOPTS=(-j8)",
        "NUM_PROCS=8",
        "NUM_MEM=4096",
        "",
        "(cd build/bitcoin && git reset -q --hard && git clean -q -f -d)",
        "(cd build/other && git reset -q --hard && git clean -q -f -d)",
    ]
    assert text.endswith("\ncd build\necho hi\n")


def test_empty_script_gives_one_empty_line() -> None:
    text = build_script(
        ScriptParams(
            name="x", bits=64, num_procs=1, memory_mib=1, reference_datetime="2000-01-01 00:00:00",
            script="",
        )
    )  # fmt: skip
    assert text.endswith("cd build\n\n")
