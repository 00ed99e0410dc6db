"""canon-zip: one implementation, run on the host and inside targets."""

from __future__ import annotations

import ast
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gitian.canonzip import canon_zip, parse_date, script_path
from gitian.cli.canonzip import main
from gitian.errors import InputError, UsageError

ROOT = Path(__file__).resolve().parents[2]


def _ut_extra(mtime: int) -> bytes:
    """An 'extended timestamp' extra field, as Info-ZIP writes it."""
    return struct.pack("<HHBI", 0x5455, 5, 1, mtime)


def make_zip(path: Path, when: tuple[int, int, int, int, int, int], salt: int = 0) -> None:
    members = [
        ("zeta.txt", b"last letter first\n" * 50, zipfile.ZIP_DEFLATED, 0o644),
        ("dir/", b"", zipfile.ZIP_STORED, 0o755 | stat.S_IFDIR),
        ("dir/run.sh", b"#!/bin/sh\necho hi\n", zipfile.ZIP_STORED, 0o755),
        ("alpha/\u00e9t\u00e9.bin", bytes(range(256)) * 10, zipfile.ZIP_DEFLATED, 0o600),
        ("empty", b"", zipfile.ZIP_DEFLATED, 0o644),
    ]
    with zipfile.ZipFile(path, "w") as z:
        z.comment = b"archive comment"
        for i, (name, data, method, mode) in enumerate(members):
            zi = zipfile.ZipInfo(name, (when[0], when[1], when[2], when[3], when[4] + i, when[5]))
            zi.compress_type = method
            zi.external_attr = (mode & 0xFFFF) << 16 | (0x10 if name.endswith("/") else 0)
            zi.create_system = 3
            zi.extra = _ut_extra(1_600_000_000 + salt + i)
            zi.comment = f"member {i}".encode()
            z.writestr(zi, data)


def test_members_keep_order_content_attributes_and_get_the_date(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.zip", tmp_path / "out.zip"
    make_zip(src, (2019, 5, 6, 7, 8, 10))
    canon_zip("2021-03-04", src, dst)
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst) as b:
        assert b.testzip() is None
        assert [i.filename for i in a.infolist()] == [i.filename for i in b.infolist()]
        assert b.comment == b"archive comment"
        for x, y in zip(a.infolist(), b.infolist(), strict=True):
            assert y.date_time == (2021, 3, 4, 0, 0, 0)
            assert a.read(x) == b.read(y)
            assert (x.external_attr, x.comment, x.compress_type) == (
                y.external_attr,
                y.comment,
                y.compress_type,
            )
            assert y.extra == b""  # the UT field carried another time


def test_output_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    make_zip(a, (2019, 5, 6, 7, 8, 10), salt=0)
    make_zip(b, (2023, 1, 2, 3, 4, 6), salt=999)
    assert a.read_bytes() != b.read_bytes()
    canon_zip("2020-02-29", a, tmp_path / "a2.zip")
    canon_zip("2020-02-29", b, tmp_path / "b2.zip")
    canon_zip("2020-02-29", tmp_path / "a2.zip", tmp_path / "a3.zip")
    assert (tmp_path / "a2.zip").read_bytes() == (tmp_path / "b2.zip").read_bytes()
    assert (tmp_path / "a2.zip").read_bytes() == (tmp_path / "a3.zip").read_bytes()


def test_target_script_host_command_and_shim_agree(tmp_path: Path) -> None:
    src = tmp_path / "in.zip"
    make_zip(src, (2019, 5, 6, 7, 8, 10))
    canon_zip("2021-03-04", src, tmp_path / "lib.zip")
    # the target-side script, run as the target runs it (a plain python3)
    script = ROOT / "target-bin" / "canon-zip"
    assert script.resolve() == script_path().resolve()
    assert os.access(script, os.X_OK)
    assert script.read_text().startswith("#!/usr/bin/env python3\n")
    p = subprocess.run(
        [sys.executable, "-I", str(script), "2021-03-04", str(src), str(tmp_path / "t.zip")],
        capture_output=True,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    # the libexec shim (console script canon-zip)
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "libexec" / "canon-zip"),
            "2021-03-04",
            str(src),
            str(tmp_path / "shim.zip"),
        ],
        capture_output=True,
    )
    assert p.returncode == 0, p.stderr
    want = (tmp_path / "lib.zip").read_bytes()
    assert (tmp_path / "t.zip").read_bytes() == want
    assert (tmp_path / "shim.zip").read_bytes() == want


def test_target_script_is_old_python_and_stdlib_only() -> None:
    src = script_path().read_text()
    ast.parse(src, feature_version=(3, 5))
    assert not re.search(r"""\bf["']""", src), "no f-strings: xenial has Python 3.5"
    assert "import gitian" not in src and "from gitian" not in src
    mods = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Import):
            mods |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module.split(".")[0])
    assert mods <= set(sys.stdlib_module_names), mods


def test_unzip_agrees_when_installed(tmp_path: Path) -> None:
    if shutil.which("unzip") is None:
        pytest.skip("unzip not installed")
    src, dst = tmp_path / "in.zip", tmp_path / "out.zip"
    make_zip(src, (2019, 5, 6, 7, 8, 10))
    canon_zip("2021-03-04", src, dst)
    p = subprocess.run(["unzip", "-t", str(dst)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout
    p = subprocess.run(["unzip", "-Z", "-T", str(dst)], capture_output=True, text=True)
    assert p.returncode == 0
    assert p.stdout.count("20210304.000000") == 5, p.stdout


@pytest.mark.parametrize("date", ["2021-3-4", "21-03-04", "2021-02-30", "1979-12-31", "x", ""])
def test_bad_dates(date: str) -> None:
    with pytest.raises(UsageError):
        parse_date(date)


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        canon_zip("2021-03-04", tmp_path / "missing.zip", tmp_path / "out.zip")
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(InputError, match="not a readable zip"):
        canon_zip("2021-03-04", junk, tmp_path / "out.zip")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.zip"]
    good = tmp_path / "good.zip"
    make_zip(good, (2019, 5, 6, 7, 8, 10))
    with pytest.raises(InputError, match="cannot write"):
        canon_zip("2021-03-04", good, tmp_path / "no" / "such" / "dir.zip")


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["2021-13-01", str(tmp_path / "a.zip"), str(tmp_path / "b.zip")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("canon-zip: error: DATE") and err.count("\n") == 1
    with pytest.raises(SystemExit) as e:
        main(["2021-12-01", str(tmp_path / "a.zip")])
    assert e.value.code == 2
    # the target script says the same kind of thing, with the same exit status
    p = subprocess.run(
        [
            sys.executable,
            str(script_path()),
            "2021-12-01",
            str(tmp_path / "a.zip"),
            str(tmp_path / "b.zip"),
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and p.stderr.startswith("canon-zip: error: ")
