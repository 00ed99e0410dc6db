"""Pull-request checks for a sigs repository (issue 12 item 2): ``--changed-since``
on git repositories made here from real attestations (bitcoin-core/guix.sigs
29.4, monero-project/gitian.sigs v0.18.3.1-linux) and their keys, and the
contrib/ workflow's command as it is written."""
# ruff: noqa: F811

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from gverify_fixtures import (
    COMPAT,
    GUIX,
    builder_keys,
    keys,  # noqa: F401 - fixture
    run_gverify,
    verdict_lines,
)

from gitian.sigsrepo import parse_raw

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "contrib" / "sigs-repository-ci.yml"


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
    }
    return subprocess.run(
        ["git", "-C", str(repo), *args], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def guix_repo(root: Path, withheld: list[str]) -> tuple[Path, str]:
    """A guix.sigs with builder-keys/ and 29.4/ as published, but for ``withheld``
    signers (kept in ``root/withheld``); its first commit."""
    repo = root / "guix.sigs"
    signers = sorted(p.name for p in (GUIX / "29.4").iterdir())
    builder_keys(repo / "builder-keys", signers)
    shutil.copytree(GUIX / "29.4", repo / "29.4")
    for s in withheld:
        shutil.move(repo / "29.4" / s, root / "withheld" / s)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    return repo, git(repo, "rev-parse", "HEAD")


def commit(repo: Path) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "pull request")


def args(repo: Path, base: str) -> list[str]:
    return [
        "--no-markup",
        "--changed-since",
        base,
        "-d",
        str(repo),
        "--keys-dir",
        str(repo / "builder-keys"),
    ]


def test_an_added_attestation_is_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, _ = guix_repo(tmp_path, ["hebasto"])
    # A newcomer: the pull request adds the builder's key with the attestations.
    key = (repo / "builder-keys" / "hebasto.gpg").read_bytes()
    (repo / "builder-keys" / "hebasto.gpg").unlink()
    commit(repo)
    base = git(repo, "rev-parse", "HEAD")
    (repo / "builder-keys" / "hebasto.gpg").write_bytes(key)
    shutil.move(tmp_path / "withheld" / "hebasto", repo / "29.4" / "hebasto")
    (repo / "README.md").write_text("not an attestation\n")
    commit(repo)
    r = run_gverify(args(repo, base), capsys, monkeypatch)
    assert r.code == 0, r.out + r.err
    # A key that comes with the change is what reviewers must look at.
    assert (
        "gverify: note: the key file builder-keys/hebasto.gpg was added by these changes" in r.out
    )
    assert r.out.startswith(
        f"Changes since {base} ({base[:12]}) to HEAD ({git(repo, 'rev-parse', 'HEAD')[:12]}): "
        "4 attestation file(s) added, 0 refused\n"
    )
    # Only what was added is judged, kind by kind.
    assert verdict_lines(r.out) == ["hebasto: OK", "hebasto: OK"]
    assert "Summary for 29.4 all.SHA256SUMS: 1 signer, 1 OK" in r.out
    assert r.out.rstrip().endswith("Overall: all 2 release(s) verified.")
    # Nothing changed since HEAD itself: nothing to judge, and that passes.
    r = run_gverify(args(repo, "HEAD"), capsys, monkeypatch)
    assert r.code == 0 and "no attestation was added or changed" in r.out


def test_modified_and_wrong_key_attestations_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, base = guix_repo(tmp_path, ["hebasto", "m3dwards"])
    shutil.move(tmp_path / "withheld" / "hebasto", repo / "29.4" / "hebasto")
    # An existing attestation changed (a line appended, its signature left).
    fan = repo / "29.4" / "fanquake" / "all.SHA256SUMS"
    fan.write_bytes(fan.read_bytes() + b"0" * 64 + b"  extra.tar.gz\n")
    # A new one signed by another builder: Emzy's real files in m3dwards' place.
    (repo / "29.4" / "m3dwards").mkdir()
    for f in ("all.SHA256SUMS", "all.SHA256SUMS.asc"):
        shutil.copyfile(repo / "29.4" / "Emzy" / f, repo / "29.4" / "m3dwards" / f)
    commit(repo)
    md = tmp_path / "report.md"
    r = run_gverify([*args(repo, base), "--report", str(md)], capsys, monkeypatch)
    assert r.code == 1
    assert "6 attestation file(s) added, 1 refused" in r.out
    assert (
        "gverify: 29.4/fanquake/all.SHA256SUMS: modified; a sigs repository is append-only"
        in r.out.splitlines()
    )
    assert verdict_lines(r.out) == ["hebasto: OK", "m3dwards: WRONG KEY", "hebasto: OK"]
    assert "(bound to emzy); not by a key trusted for m3dwards" in r.out
    assert "Overall: FAILED: 1 change(s) refused, 1 of 2 release(s) failed" in r.out
    text = md.read_text()
    assert "- **refused**: `29.4/fanquake/all.SHA256SUMS`: `modified;" in text
    assert "| `m3dwards` | WRONG KEY |" in text
    r = run_gverify([*args(repo, base), "--json"], capsys, monkeypatch)
    doc = json.loads(r.out)
    assert doc["exit_code"] == 1 and doc["changes"]["refused"] == [
        {
            "path": "29.4/fanquake/all.SHA256SUMS",
            "reason": "modified; a sigs repository is append-only",
        }
    ]
    assert len(doc["changes"]["added"]) == 6


def test_removed_renamed_retyped_and_linked_attestations_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, base = guix_repo(tmp_path, [])
    rel = repo / "29.4"
    (rel / "Sjors" / "noncodesigned.SHA256SUMS.asc").unlink()
    git(repo, "mv", "29.4/guggero", "29.4/guggero2")
    target = rel / "achow101" / "all.SHA256SUMS"
    target.unlink()
    os.symlink("../fanquake/all.SHA256SUMS", target)
    (rel / "newcomer").mkdir()
    os.symlink(
        "../fanquake/noncodesigned.SHA256SUMS", rel / "newcomer" / "noncodesigned.SHA256SUMS"
    )
    commit(repo)
    r = run_gverify(args(repo, base), capsys, monkeypatch)
    assert r.code == 1
    refused = [ln for ln in r.out.splitlines() if ln.startswith("gverify: 29.4/")]
    assert (
        "gverify: 29.4/Sjors/noncodesigned.SHA256SUMS.asc: removed; "
        "a sigs repository is append-only"
    ) in refused
    assert (
        "gverify: 29.4/achow101/all.SHA256SUMS: changed type; a sigs repository is append-only"
        in refused
    )
    assert (
        "gverify: 29.4/guggero/all.SHA256SUMS: renamed to 29.4/guggero2/all.SHA256SUMS; "
        "a sigs repository is append-only"
    ) in refused
    assert (
        "gverify: 29.4/newcomer/noncodesigned.SHA256SUMS: added with mode 120000, "
        "not as a regular file"
    ) in refused
    # The renamed files are judged where they are now: guggero's key is not guggero2's.
    assert "guggero2: WRONG KEY" in verdict_lines(r.out)


def test_odd_bytes_in_a_path_are_read_as_they_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, base = guix_repo(tmp_path, ["hebasto"])
    odd = os.fsdecode(b"he\xffbas\nto \x1b[31m")
    shutil.move(tmp_path / "withheld" / "hebasto", repo / "29.4" / odd)
    commit(repo)
    r = run_gverify(args(repo, base), capsys, monkeypatch)
    assert r.code == 1
    # Judged (no key is bound to that name) and shown escaped, never raw.
    assert "he\\xffbas\\x0ato \\x1b[31m: WRONG KEY" in r.out
    assert "\x1b" not in r.out and "\xff" not in r.out


def test_what_is_judged_is_what_was_committed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, base = guix_repo(tmp_path, ["hebasto"])
    shutil.move(tmp_path / "withheld" / "hebasto", repo / "29.4" / "hebasto")
    commit(repo)
    f = repo / "29.4" / "hebasto" / "all.SHA256SUMS"
    f.write_bytes(f.read_bytes().replace(b"bitcoin", b"bitcoln", 1))
    r = run_gverify(args(repo, base), capsys, monkeypatch)
    assert r.code == 2 and r.out == ""
    assert "29.4/hebasto/all.SHA256SUMS differs from what HEAD holds" in r.err


def test_changed_since_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, base = guix_repo(tmp_path, [])
    for ref, why in (
        ("-p", "is not a git commit"),
        ("no-such-branch", "git rev-parse failed"),
        ("HEAD~5", "git rev-parse failed"),
    ):
        r = run_gverify(args(repo, ref), capsys, monkeypatch)
        assert r.code == 2 and why in r.err, r.err
    r = run_gverify(["--changed-since", base, "-d", str(repo)], capsys, monkeypatch)
    assert r.code == 2 and "--changed-since needs the keys each signer is bound to" in r.err
    plain = tmp_path / "plain"
    shutil.copytree(GUIX / "29.4", plain / "29.4")
    r = run_gverify(
        args(plain, base)[:-2] + ["--keys-dir", str(repo / "builder-keys")], capsys, monkeypatch
    )
    assert r.code == 2 and "git rev-parse failed" in r.err


def test_a_gitian_sigs_repository(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Monero's layout: <release>/<signer>/<name>-build.assert(.sig), keys in
    gitian-pubkeys/<signer>.asc; any descriptor name, or only the ones given."""
    repo = tmp_path / "gitian.sigs"
    shutil.copytree(COMPAT / "keys" / "monero", repo / "gitian-pubkeys")
    src = COMPAT / "sigs" / "monero-linux-0.18" / "v0.18.3.1-linux"
    shutil.copytree(src, repo / "v0.18.3.1-linux", ignore=shutil.ignore_patterns("hyc"))
    git(repo, "init", "-q", "-b", "main")
    commit(repo)
    base = git(repo, "rev-parse", "HEAD")
    shutil.copytree(src / "hyc", repo / "v0.18.3.1-linux" / "hyc")
    commit(repo)
    keys_dir = ["--keys-dir", str(repo / "gitian-pubkeys")]
    cmd = ["--no-markup", "--changed-since", base, "-d", str(repo), *keys_dir]
    r = run_gverify(cmd, capsys, monkeypatch)
    assert r.code == 0, r.out + r.err
    assert verdict_lines(r.out) == ["hyc: OK"]
    assert "Summary for monero-linux-0.18 v0.18.3.1-linux: 1 signer, 1 OK" in r.out
    other = tmp_path / "monero-win-0.18.yml"
    other.write_text("name: monero-win-0.18\n")
    r = run_gverify([*cmd, str(other)], capsys, monkeypatch)
    assert r.code == 1
    assert (
        "gverify: v0.18.3.1-linux/hyc/monero-linux-0.18-build.assert: an attestation of "
        "monero-linux-0.18, none of the given descriptors"
    ) in r.out


def test_the_workflow_runs_this_command(tmp_path: Path) -> None:
    """The gverify step of contrib/sigs-repository-ci.yml, run as written (bash,
    its environment, GitHub's expression for the base commit filled in) on a
    pull request that adds one attestation, and on one that changes another."""
    flow = yaml.safe_load(WORKFLOW.read_text())
    (job,) = flow["jobs"].values()
    (step,) = [s for s in job["steps"] if s.get("run", "").startswith("gverify ")]
    assert "--changed-since" in step["run"] and flow[True] == {"pull_request": None}
    repo, base = guix_repo(tmp_path, ["hebasto"])
    env = {k: str(v) for k, v in {**job["env"], **step["env"]}.items()}
    env["BASE"] = env["BASE"].replace("${{ github.event.pull_request.base.sha }}", base)
    assert "${{" not in "".join(env.values())
    runner = tmp_path / "runner"
    runner.mkdir()
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"

    def run_step() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-e", "-c", step["run"]],
            cwd=repo,
            env={**os.environ, **env, "PATH": path, "RUNNER_TEMP": str(runner)},
            capture_output=True,
            text=True,
            timeout=120,
        )

    shutil.move(tmp_path / "withheld" / "hebasto", repo / "29.4" / "hebasto")
    commit(repo)
    done = run_step()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hebasto: OK" in done.stdout
    assert "## `29.4 all.SHA256SUMS`: verified" in (runner / "gverify.md").read_text()
    fan = repo / "29.4" / "fanquake" / "noncodesigned.SHA256SUMS"
    fan.write_bytes(fan.read_bytes()[:-10] + b"changed\n")
    commit(repo)
    done = run_step()
    assert done.returncode == 1
    assert "29.4/fanquake/noncodesigned.SHA256SUMS: modified" in done.stdout


def test_raw_records() -> None:
    out = (
        b":000000 100644 0000000 1111111 A\x00a/b/c\x00"
        b":100644 100644 2222222 3333333 R087\x00old/x\x00new/\xff\x00"
        b":100644 120000 4444444 5555555 T\x00t\x00"
    )
    (a, r, t) = parse_raw(out)
    assert (a.status, a.path, a.new_mode) == ("A", "a/b/c", "100644")
    assert (r.status, r.old_path, r.path) == ("R", "old/x", os.fsdecode(b"new/\xff"))
    assert (t.status, t.new_mode) == ("T", "120000")
