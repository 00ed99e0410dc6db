"""gsign: byte-exact asserts from the compat results, real gpg signatures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gitian.cli.gsign import cli, main
from gitian.manifest import load_report

ROOT = Path(__file__).resolve().parents[2]

GOLDEN = [
    ("ex1-gbuild-res.yml", "ex1-gbuild-gsign.assert"),
    ("ex2-gbuild-res-signer.yml", "ex2-gbuild-gsign-signer.assert"),
    ("ex3-gbuild-res-edge.yml", "ex3-gbuild-gsign-edge.assert"),
    ("ex4-gbuild-res-empty-base.yml", "ex4-gbuild-gsign-empty-base.assert"),
]


def make_home(tmp: Path, compat: Path, res: str, asrt: str) -> tuple[Path, Path, str, str]:
    """A gitian home holding the compat result; returns (home, descriptor, name, release)."""
    expected = load_report((compat / "yaml" / asrt).read_bytes(), asrt)
    assert expected.name and expected.release
    home = tmp / "home"
    (home / "result").mkdir(parents=True)
    (home / "result" / f"{expected.name}-res.yml").write_bytes((compat / "yaml" / res).read_bytes())
    desc = tmp / "pkg.yml"
    desc.write_text(
        f"name: {json.dumps(expected.name)}\n"
        "distro: debian\nsuites: [bookworm]\narchitectures: [amd64]\n"
        "packages: []\nscript: 'true'\nreference_datetime: '2021-01-01 00:00:00'\n"
        # JSON is YAML: the optionals exactly as the assert holds them
        f"optionals: {json.dumps(expected.optionals)}\n"
    )
    return home, desc, expected.name, expected.release


def verify(gnupghome: str, sig: Path, data: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["gpg", "--batch", "--homedir", gnupghome, "--verify", str(sig), str(data)],
        capture_output=True,
    )


def invoke(args: list[str]) -> Result:
    """Through Click's runner (success paths: errors would propagate)."""
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Through the console-script main, which maps errors to exit codes."""
    with pytest.raises(SystemExit) as e:
        main(args)
    out, err = capsys.readouterr()
    code = e.value.code
    assert isinstance(code, int)
    return code, out, err


@pytest.mark.parametrize(("res", "asrt"), GOLDEN)
def test_gsign_writes_the_golden_assert_and_a_valid_signature(
    tmp_path: Path, compat: Path, gpg_home: tuple[str, str, str], res: str, asrt: str
) -> None:
    gnupghome, fpr, _ = gpg_home
    home, desc, name, release = make_home(tmp_path, compat, res, asrt)
    r = invoke(
        ["--workdir", str(home), "-s", fpr, "-r", release, "--gnupghome", gnupghome, str(desc)]
    )
    assert r.exit_code == 0, r.output
    out = home / "sigs" / name / release / fpr / f"{name}-build.assert"
    assert out.read_bytes() == (compat / "yaml" / asrt).read_bytes()
    sig = out.with_name(out.name + ".sig")
    assert not sig.read_bytes().startswith(b"-----BEGIN")  # binary, like gpg --detach-sign
    v = verify(gnupghome, sig, out)
    assert v.returncode == 0, v.stderr.decode()
    assert r.output.strip() == str(out)
    # nothing else left behind in the signer's directory
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name, sig.name]


def test_bin_shim_as_a_subprocess(
    tmp_path: Path, compat: Path, gpg_home: tuple[str, str, str]
) -> None:
    gnupghome, fpr, _ = gpg_home
    home, desc, name, release = make_home(tmp_path, compat, *GOLDEN[2])
    env = {**os.environ, "GNUPGHOME": gnupghome, "GITIAN_BASE": str(home)}
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bin" / "gsign"),
            "--signer",
            fpr,
            "--release",
            release,
            str(desc),
        ],
        capture_output=True,
        env=env,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr.decode()
    out = home / "sigs" / name / release / fpr / f"{name}-build.assert"
    assert out.read_bytes() == (compat / "yaml" / GOLDEN[2][1]).read_bytes()
    assert verify(gnupghome, out.with_name(out.name + ".sig"), out).returncode == 0
    # -q: nothing on stdout
    out.unlink()
    p = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "gsign"), "-q", "-s", fpr, "-r", release, str(desc)],
        capture_output=True,
        env=env,
        cwd=tmp_path,
    )
    assert p.returncode == 0 and p.stdout == b"", p.stderr.decode()


def test_signing_program_is_an_argv(
    tmp_path: Path,
    compat: Path,
    gpg_home: tuple[str, str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gnupghome, fpr, _ = gpg_home
    home, desc, name, release = make_home(tmp_path, compat, *GOLDEN[0])
    dest = tmp_path / "elsewhere"
    monkeypatch.setenv("GNUPGHOME", gnupghome)
    code, out, err = run_main(
        [
            "--workdir",
            str(home),
            "-s",
            fpr,
            "-r",
            release,
            "-d",
            str(dest),
            "-p",
            "gpg --batch --detach-sign",
            str(desc),
        ],
        capsys,
    )
    assert code == 0, err
    assrt = dest / release / fpr / f"{name}-build.assert"
    assert out == f"{assrt}\n"
    assert assrt.read_bytes() == (compat / "yaml" / GOLDEN[0][1]).read_bytes()
    assert verify(gnupghome, assrt.with_name(assrt.name + ".sig"), assrt).returncode == 0
    # quoting is honoured like a shell would, with no shell: a home with a space
    spaced = tmp_path / "gpg home"
    spaced.symlink_to(gnupghome)
    monkeypatch.delenv("GNUPGHOME")
    code, _, err = run_main(
        [
            "--workdir",
            str(home),
            "-s",
            fpr,
            "-r",
            release,
            "-d",
            str(dest),
            "-p",
            f"gpg --batch --homedir '{spaced}' --detach-sign",
            str(desc),
        ],
        capsys,
    )
    assert code == 0, err
    assert verify(gnupghome, assrt.with_name(assrt.name + ".sig"), assrt).returncode == 0


def test_program_is_never_run_through_a_shell(
    tmp_path: Path,
    compat: Path,
    gpg_home: tuple[str, str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    gnupghome, fpr, _ = gpg_home
    home, desc, _, release = make_home(tmp_path, compat, *GOLDEN[0])
    marker = tmp_path / "pwned"
    code, _, err = run_main(
        [
            "--workdir",
            str(home),
            "-s",
            fpr,
            "-r",
            release,
            "--gnupghome",
            gnupghome,
            "-p",
            f"gpg --batch --detach-sign; touch {marker}",
            str(desc),
        ],
        capsys,
    )
    assert code == 1, err
    assert "signing program failed" in err
    assert not marker.exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-s", "../x"], "'--signer' value '../x' is not sanitary"),
        (["-s", "alice", "-r", "a b"], "'--release' value 'a b' is not sanitary"),
        (["-s", ".hidden"], "not sanitary"),
        (["-s", "a/b"], "not sanitary"),
        (["-s", "alice", "-r", ".."], "not sanitary"),
    ],
)
def test_unsanitary_signer_or_release_is_refused_before_anything(
    tmp_path: Path, compat: Path, args: list[str], needle: str
) -> None:
    home, desc, _, _ = make_home(tmp_path, compat, *GOLDEN[0])
    with pytest.raises(SystemExit) as e:
        main(["--workdir", str(home), *args, str(desc)])
    assert e.value.code == 2
    assert not (home / "sigs").exists()


def test_missing_result_file(
    tmp_path: Path, compat: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home, desc, name, _ = make_home(tmp_path, compat, *GOLDEN[0])
    (home / "result" / f"{name}-res.yml").unlink()
    code, _, err = run_main(["--workdir", str(home), "-s", "alice", str(desc)], capsys)
    assert code == 2
    assert f"no build result at {home / 'result' / (name + '-res.yml')}" in err
    assert not (home / "sigs").exists()


def test_failed_signing_keeps_the_previous_assert_and_signature(
    tmp_path: Path,
    compat: Path,
    gpg_home: tuple[str, str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    gnupghome, fpr, _ = gpg_home
    home, desc, name, release = make_home(tmp_path, compat, *GOLDEN[1])
    base = ["--workdir", str(home), "-s", fpr, "-r", release, "--gnupghome", gnupghome]
    assert invoke([*base, str(desc)]).exit_code == 0
    out = home / "sigs" / name / release / fpr / f"{name}-build.assert"
    sig = out.with_name(out.name + ".sig")
    before = (out.read_bytes(), sig.read_bytes(), out.stat().st_mtime_ns)
    # a new result, then signing fails (the program exits 1 after writing a partial .sig)
    (home / "result" / f"{name}-res.yml").write_bytes((compat / "yaml" / GOLDEN[0][0]).read_bytes())
    fake = tmp_path / "fails"
    fake.write_text('#!/bin/sh\nfor last; do :; done\necho partial > "$last.sig"\nexit 1\n')
    fake.chmod(0o755)
    code, _, err = run_main([*base, "-p", str(fake), str(desc)], capsys)
    assert code == 1, err
    assert (out.read_bytes(), sig.read_bytes(), out.stat().st_mtime_ns) == before
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name, sig.name]
    # the default signer with an unknown key fails the same way
    code, _, err = run_main(
        [
            "--workdir",
            str(home),
            "-s",
            "nobody-here",
            "-r",
            release,
            "--gnupghome",
            gnupghome,
            str(desc),
        ],
        capsys,
    )
    assert code == 1
    assert "gsign: error: gpg could not sign as 'nobody-here'" in err, err
    assert not (home / "sigs" / name / release / "nobody-here" / f"{name}-build.assert").exists()
    assert (out.read_bytes(), sig.read_bytes()) == before[:2]


def test_program_that_writes_no_signature(
    tmp_path: Path, compat: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home, desc, name, release = make_home(tmp_path, compat, *GOLDEN[0])
    code, _, err = run_main(
        ["--workdir", str(home), "-s", "alice", "-r", release, "-p", "true", str(desc)], capsys
    )
    assert code == 1
    assert "no signature" in err
    # no assert, no signature, and not even the directories it made for them
    assert not (home / "sigs").exists()


def test_existing_assert_is_replaced_atomically(
    tmp_path: Path, compat: Path, gpg_home: tuple[str, str, str]
) -> None:
    gnupghome, fpr, _ = gpg_home
    home, desc, name, release = make_home(tmp_path, compat, *GOLDEN[3])
    out = home / "sigs" / name / release / fpr / f"{name}-build.assert"
    out.parent.mkdir(parents=True)
    out.write_bytes(b"old\n")
    out.with_name(out.name + ".sig").write_bytes(b"old sig")
    r = invoke(
        ["--workdir", str(home), "-s", fpr, "-r", release, "--gnupghome", gnupghome, str(desc)]
    )
    assert r.exit_code == 0, r.output
    assert out.read_bytes() == (compat / "yaml" / GOLDEN[3][1]).read_bytes()
    assert verify(gnupghome, out.with_name(out.name + ".sig"), out).returncode == 0


def test_malformed_program_is_a_usage_error(
    tmp_path: Path, compat: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home, desc, _, _ = make_home(tmp_path, compat, *GOLDEN[0])
    code, _, err = run_main(
        ["--workdir", str(home), "-s", "alice", "-p", "gpg 'unbalanced", str(desc)], capsys
    )
    assert code == 2 and "--signing_program" in err and err.count("\n") == 1
    assert not (home / "sigs").exists()


@pytest.mark.parametrize(
    "link", ["name", "release", "signer", "assert", "signature", "other-file-in-signer"]
)
def test_a_symlink_anywhere_in_the_signers_tree_is_refused(
    tmp_path: Path,
    compat: Path,
    gpg_home: tuple[str, str, str],
    capsys: pytest.CaptureFixture[str],
    link: str,
) -> None:
    """gsign writes nothing outside sigs/: a link at sigs/<name>, <release>,
    <signer> or in the signer's directory is refused before anything is written."""
    gnupghome, fpr, _ = gpg_home
    home, desc, name, release = make_home(tmp_path, compat, *GOLDEN[0])
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"keep me\n")
    parts = {"name": home / "sigs" / name}
    parts["release"] = parts["name"] / release
    parts["signer"] = parts["release"] / fpr
    assrt = parts["signer"] / f"{name}-build.assert"
    files = {
        "assert": assrt,
        "signature": assrt.with_name(assrt.name + ".sig"),
        "other-file-in-signer": parts["signer"] / "notes",
    }
    if link in parts:
        parts[link].parent.mkdir(parents=True, exist_ok=True)
        parts[link].symlink_to(outside)
    else:
        parts["signer"].mkdir(parents=True)
        files[link].symlink_to(outside / "victim")
    before = sorted(p.name for p in outside.iterdir())
    code, _, err = run_main(
        ["--workdir", str(home), "-s", fpr, "-r", release, "--gnupghome", gnupghome, str(desc)],
        capsys,
    )
    assert code == 2 and "is a symlink" in err, err
    assert sorted(p.name for p in outside.iterdir()) == before
    assert (outside / "victim").read_bytes() == b"keep me\n"


def test_sigs_itself_may_be_a_link_to_a_sigs_repository(
    tmp_path: Path, compat: Path, gpg_home: tuple[str, str, str]
) -> None:
    gnupghome, fpr, _ = gpg_home
    home, desc, name, release = make_home(tmp_path, compat, *GOLDEN[0])
    repo = tmp_path / "gitian.sigs"
    repo.mkdir()
    (home / "sigs").symlink_to(repo)
    r = invoke(
        ["--workdir", str(home), "-s", fpr, "-r", release, "--gnupghome", gnupghome, str(desc)]
    )
    assert r.exit_code == 0, r.output
    assert (repo / name / release / fpr / f"{name}-build.assert").is_file()
