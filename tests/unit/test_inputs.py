"""Git remotes and input files, against real git repositories made here."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gitian.descriptor import Remote
from gitian.errors import InputError
from gitian.home import Home
from gitian.inputs import FetchOptions, check_files, check_remotes, checkout, file_lines

GIT_ENV = {
    "GIT_AUTHOR_NAME": "A",
    "GIT_AUTHOR_EMAIL": "a@example.invalid",
    "GIT_COMMITTER_NAME": "C",
    "GIT_COMMITTER_EMAIL": "c@example.invalid",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def g(repo: Path, *args: str, date: str = "2021-02-03T04:05:06+0200", check: bool = True) -> str:
    env = dict(os.environ, **GIT_ENV, GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
    return subprocess.run(
        ["git", "-c", "commit.gpgSign=false", "-c", "init.defaultBranch=main", *args],
        cwd=repo, env=env, check=check, capture_output=True,
    ).stdout.decode().strip()  # fmt: skip


@pytest.fixture
def upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for k, v in GIT_ENV.items():
        monkeypatch.setenv(k, v)
    repo = tmp_path / "upstream"
    repo.mkdir()
    g(repo, "init", "-q")
    (repo / "f").write_text("one\n")
    g(repo, "add", "f")
    g(repo, "commit", "-qm", "one")
    g(repo, "tag", "-a", "-m", "v1", "v1.0")
    (repo / "f").write_text("two\n")
    g(repo, "commit", "-qam", "two", date="2022-12-31T23:30:00-0100")
    g(repo, "branch", "side")
    return repo


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = Home(tmp_path / "home")
    h.inputs.mkdir(parents=True)
    return h


def test_checkout_by_full_commit_records_hash_and_utc_author_date(
    upstream: Path, home: Home
) -> None:
    head = g(upstream, "rev-parse", "HEAD")
    got = checkout(home, Remote(url=os.fspath(upstream), dir="src", commit=head), FetchOptions())
    assert got.commit == head
    assert got.author_date == "2023-01-01 00:30:00"  # -0100 shifted to UTC
    assert (home.inputs / "src" / "f").read_text() == "two\n"


def test_tag_is_fetched_as_a_tag(upstream: Path, home: Home) -> None:
    got = checkout(home, Remote(url=os.fspath(upstream), dir="src", commit="v1.0"), FetchOptions())
    assert got.commit == g(upstream, "rev-parse", "v1.0^{commit}")
    repo = home.inputs / "src"
    assert g(repo, "cat-file", "-t", "refs/tags/v1.0") == "tag"
    assert (repo / "f").read_text() == "one\n"
    # only that tag, no branches (no --fetch-branches)
    assert g(repo, "for-each-ref", "--format=%(refname)", "refs/heads") == ""


def test_branch_name_checks_out_its_tip(upstream: Path, home: Home) -> None:
    got = checkout(home, Remote(url=os.fspath(upstream), dir="src", commit="side"), FetchOptions())
    assert got.commit == g(upstream, "rev-parse", "side")


def test_fetch_branches_and_tags(upstream: Path, home: Home) -> None:
    head = g(upstream, "rev-parse", "HEAD")
    checkout(
        home,
        Remote(url=os.fspath(upstream), dir="src", commit=head),
        FetchOptions(fetch_branches=True, fetch_tags=True),
    )
    repo = home.inputs / "src"
    refs = g(repo, "for-each-ref", "--format=%(refname)").split()
    assert {"refs/heads/main", "refs/heads/side", "refs/tags/v1.0"} <= set(refs)


def test_skip_fetch_checks_out_what_is_there(upstream: Path, home: Home) -> None:
    first = g(upstream, "rev-parse", "HEAD~1")
    g(home.inputs, "clone", "-q", os.fspath(upstream), "src")
    got = checkout(
        home,
        Remote(url="https://unreachable.invalid/x.git", dir="src", commit=first),
        FetchOptions(skip_fetch=True),
    )
    assert got.commit == first


def test_skip_fetch_with_unknown_commit_is_a_clear_error(upstream: Path, home: Home) -> None:
    g(home.inputs, "clone", "-q", os.fspath(upstream), "src")
    with pytest.raises(InputError, match="remote 'src'") as e:
        checkout(
            home,
            Remote(url="x", dir="src", commit="0" * 40),
            FetchOptions(skip_fetch=True),
        )
    assert "--skip-fetch" in (e.value.hint or "")


def test_bad_url_is_a_clear_error(home: Home, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="remote 'src'"):
        checkout(
            home, Remote(url=os.fspath(tmp_path / "nope"), dir="src", commit="main"), FetchOptions()
        )


def test_submodules_are_updated_recursively(
    upstream: Path, home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Local submodule URLs need the file transport, which git allows only on request.
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "protocol.file.allow")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "always")
    outer = tmp_path / "outer"
    outer.mkdir()
    g(outer, "init", "-q")
    g(outer, "submodule", "add", "-q", os.fspath(upstream), "sub")
    g(outer, "commit", "-qm", "with sub")
    got = checkout(home, Remote(url=os.fspath(outer), dir="o", commit="main"), FetchOptions())
    assert got.commit == g(outer, "rev-parse", "HEAD")
    assert (home.inputs / "o" / "sub" / "f").read_text() == "two\n"


def test_ext_transport_in_submodules_never_runs(home: Home, tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    outer.mkdir()
    g(outer, "init", "-q")
    witness = tmp_path / "pwned"
    (outer / ".gitmodules").write_text(
        f'[submodule "s"]\n\tpath = s\n\turl = ext::sh -c touch% {witness}\n'
    )
    blob = "1" * 40
    g(outer, "update-index", "--add", "--cacheinfo", f"160000,{blob},s")
    g(outer, "add", ".gitmodules")
    g(outer, "commit", "-qm", "evil")
    with pytest.raises(InputError):
        checkout(home, Remote(url=os.fspath(outer), dir="o", commit="main"), FetchOptions())
    assert not witness.exists()


def test_symlinked_checkout_dir_is_refused(home: Home, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (home.inputs / "src").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InputError, match="symbolic link"):
        check_remotes(home, [Remote(url="x", dir="src", commit="abc")])


def test_missing_commit_is_refused_before_anything(home: Home) -> None:
    with pytest.raises(InputError, match="must specify a commit for directory src"):
        check_remotes(home, [Remote(url="x", dir="src", commit=None)])


def test_input_files(home: Home) -> None:
    (home.inputs / "a.tar").write_bytes(b"abc")
    (home.inputs / "linked").symlink_to("a.tar")
    check_files(home, ["a.tar", "linked"])
    assert file_lines(home, ["a.tar", "linked"]) == [
        ("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "a.tar"),
        ("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "linked"),
    ]
    with pytest.raises(InputError, match="'missing.tar'"):
        check_files(home, ["missing.tar"])
    (home.inputs / "d").mkdir()
    with pytest.raises(InputError, match="not a regular file"):
        check_files(home, ["d"])


def test_plain_directory_is_not_mistaken_for_a_checkout(upstream: Path, tmp_path: Path) -> None:
    # The home inside another repository (e.g. the gitian-py checkout itself):
    # git must never fetch into or check out over the enclosing repository.
    outer = tmp_path / "outer-repo"
    outer.mkdir()
    g(outer, "init", "-q")
    home = Home(outer)
    (home.inputs / "src").mkdir(parents=True)
    (home.inputs / "src" / "stray").write_text("x")
    with pytest.raises(InputError, match="not a git checkout"):
        checkout(home, Remote(url=os.fspath(upstream), dir="src", commit="main"), FetchOptions())
    (home.inputs / "src" / "stray").unlink()  # empty: made into a checkout
    got = checkout(home, Remote(url=os.fspath(upstream), dir="src", commit="main"), FetchOptions())
    assert got.commit == g(upstream, "rev-parse", "main")
    assert g(outer, "rev-parse", "--verify", "-q", "HEAD", check=False) == ""
