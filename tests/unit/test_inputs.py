"""Git remotes and input files, against real git repositories made here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gitian.descriptor import Remote
from gitian.errors import InputError
from gitian.home import Home
from gitian.inputs import (
    FetchOptions,
    check_files,
    check_remotes,
    checkout,
    file_lines,
    handover,
    handover_refs,
)
from tests.conftest import git_in, make_upstream

GIT_ENV = {
    "GIT_AUTHOR_NAME": "A",
    "GIT_AUTHOR_EMAIL": "a@example.invalid",
    "GIT_COMMITTER_NAME": "C",
    "GIT_COMMITTER_EMAIL": "c@example.invalid",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def g(repo: Path, *args: str, date: str = "2021-02-03T04:05:06+0200", check: bool = True) -> str:
    return git_in(repo, *args, date=date, check=check)


@pytest.fixture
def upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for k, v in GIT_ENV.items():
        monkeypatch.setenv(k, v)
    return make_upstream(tmp_path / "upstream")


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


def with_submodule(upstream: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository ``outer`` whose submodule ``sub`` is ``upstream``."""
    # Local submodule URLs need the file transport, which git allows only on request.
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "protocol.file.allow")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "always")
    outer = tmp_path / "outer"
    outer.mkdir()
    g(outer, "init", "-q")
    g(outer, "submodule", "add", "-q", os.fspath(upstream), "sub")
    g(outer, "commit", "-qm", "with sub")
    return outer


def test_submodules_are_updated_recursively(
    upstream: Path, home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outer = with_submodule(upstream, tmp_path, monkeypatch)
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


# -- the repository handed to the target (issue 14 item 2) ---------------------


@pytest.mark.parametrize(
    ("tag", "opts", "refs"),
    [
        (None, FetchOptions(), ()),
        ("v1.0", FetchOptions(), ("refs/tags/v1.0",)),
        ("v1.0", FetchOptions(skip_fetch=True), ("refs/tags/v1.0",)),
        (None, FetchOptions(fetch_tags=True), ("refs/tags/",)),
        ("v1.0", FetchOptions(fetch_tags=True), ("refs/tags/",)),
        (None, FetchOptions(fetch_branches=True), ("refs/heads/",)),
        ("v1.0", FetchOptions(fetch_branches=True), ("refs/heads/", "refs/tags/v1.0")),
        (None, FetchOptions(fetch_branches=True, fetch_tags=True), ("refs/heads/", "refs/tags/")),
    ],
)
def test_handover_refs(tag: str | None, opts: FetchOptions, refs: tuple[str, ...]) -> None:
    assert handover_refs(tag, opts) == refs


def _seen(repo: Path) -> dict[str, str]:
    """What a build script can see of a repository's refs and history."""
    return {
        "describe": g(repo, "describe", "--always"),
        "tags": g(repo, "tag"),
        "refs": g(repo, "for-each-ref", "--format=%(objecttype) %(refname)"),
        "branch": g(repo, "branch"),
        "head": g(repo, "rev-parse", "HEAD"),
        "symbolic": g(repo, "symbolic-ref", "-q", "HEAD", check=False),
        "remotes": g(repo, "remote"),
        "log": g(repo, "log", "--all", "--format=%H"),
        "objects": g(repo, "count-objects", "-v"),
        "files": " ".join(sorted(p.name for p in repo.iterdir())),
    }


def _handed(home: Home, remote: Remote, opts: FetchOptions | None = None) -> dict[str, str]:
    with handover(home, checkout(home, remote, opts or FetchOptions())) as repo:
        assert repo.name == remote.dir
        assert not (repo / ".git" / "logs").exists()
        assert not (repo / ".git" / "FETCH_HEAD").exists()
        assert not (repo / ".git" / "hooks").exists()
        return _seen(repo)


def test_a_commit_named_by_id_gets_no_tag_an_earlier_build_fetched(
    upstream: Path, tmp_path: Path
) -> None:
    v1 = g(upstream, "rev-parse", "v1.0^{commit}")
    url = os.fspath(upstream)
    # This builder built the release by its tag first, then by its id ...
    home = Home(tmp_path / "a")
    home.inputs.mkdir(parents=True)
    by_tag = _handed(home, Remote(url=url, dir="src", commit="v1.0"))
    assert by_tag["describe"] == "v1.0" and by_tag["tags"] == "v1.0"
    assert by_tag["refs"] == "tag refs/tags/v1.0"  # the annotated tag, as a tag
    assert g(home.inputs / "src", "tag") == "v1.0"  # the cache keeps it
    again = _handed(home, Remote(url=url, dir="src", commit=v1))
    # ... and gets what a builder who never built it by tag gets.
    fresh = Home(tmp_path / "b")
    fresh.inputs.mkdir(parents=True)
    assert again == _handed(fresh, Remote(url=url, dir="src", commit=v1))
    assert again["describe"] == v1[:7] and again["tags"] == "" and again["refs"] == ""
    assert again["head"] == v1 and again["symbolic"] == "" and again["remotes"] == ""
    assert again["log"] == v1  # one commit: nothing of the later history fetched before
    assert again["files"] == ".git f"


def test_objects_an_earlier_build_fetched_are_not_handed_over(
    upstream: Path, home: Home
) -> None:
    url = os.fspath(upstream)
    first = g(upstream, "rev-parse", "main~1")
    _handed(home, Remote(url=url, dir="src", commit="main"))  # the cache now holds main too
    got = checkout(home, Remote(url=url, dir="src", commit=first), FetchOptions())
    with handover(home, got) as repo:
        listed = g(repo, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)").split()
        reachable = g(repo, "rev-list", "--objects", "--all", "HEAD").split("\n")
        assert sorted(listed) == sorted(line.split()[0] for line in reachable)
        assert (repo / "f").read_text() == "one\n"


def test_fetch_tags_hands_over_the_remotes_tags_now(upstream: Path, home: Home) -> None:
    url = os.fspath(upstream)
    g(upstream, "tag", "gone", "main~1")
    opts = FetchOptions(fetch_tags=True)
    assert _handed(home, Remote(url=url, dir="src", commit="main"), opts)["tags"] == "gone\nv1.0"
    g(upstream, "tag", "-d", "gone")
    g(upstream, "tag", "-a", "-m", "v2", "v2.0")
    seen = _handed(home, Remote(url=url, dir="src", commit="main"), opts)
    assert seen["tags"] == "v1.0\nv2.0" and seen["describe"] == "v2.0"
    assert seen["refs"] == "tag refs/tags/v1.0\ntag refs/tags/v2.0"
    # Without --fetch-tags none of them, though the cache still has them.
    seen = _handed(home, Remote(url=url, dir="src", commit="main"))
    assert seen["tags"] == "" and g(home.inputs / "src", "tag") == "v1.0\nv2.0"


def test_fetch_branches_hands_over_the_remotes_branches(upstream: Path, home: Home) -> None:
    url = os.fspath(upstream)
    branches = FetchOptions(fetch_branches=True)
    seen = _handed(home, Remote(url=url, dir="src", commit="v1.0"), branches)
    assert seen["refs"] == "commit refs/heads/main\ncommit refs/heads/side\ntag refs/tags/v1.0"
    assert seen["symbolic"] == ""  # HEAD stays detached at the commit
    assert _handed(home, Remote(url=url, dir="src", commit="v1.0"))["refs"] == "tag refs/tags/v1.0"


def test_skip_fetch_by_tag_hands_over_that_tag(upstream: Path, home: Home) -> None:
    g(home.inputs, "clone", "-q", os.fspath(upstream), "src")
    remote = Remote(url="https://unreachable.invalid/x.git", dir="src", commit="v1.0")
    seen = _handed(home, remote, FetchOptions(skip_fetch=True))
    assert seen["tags"] == "v1.0" and seen["remotes"] == "" and "side" not in seen["branch"]


def test_submodules_are_handed_over_from_the_cache(
    upstream: Path, home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outer = with_submodule(upstream, tmp_path, monkeypatch)
    got = checkout(home, Remote(url=os.fspath(outer), dir="o", commit="main"), FetchOptions())
    # The upstream of the submodule is gone: the hand-over must not need it.
    moved = upstream.rename(tmp_path / "moved")
    with handover(home, got) as repo:
        sub = repo / "sub"
        assert (sub / "f").read_text() == "two\n"
        assert g(sub, "rev-parse", "HEAD") == g(moved, "rev-parse", "main")
        assert g(sub, "for-each-ref") == ""
        assert g(sub, "symbolic-ref", "-q", "HEAD", check=False) == ""
        assert g(sub, "remote", "get-url", "origin") == os.fspath(upstream)  # as .gitmodules says
        assert g(repo, "status", "--porcelain") == ""
        gitdir = Path(g(sub, "rev-parse", "--absolute-git-dir"))
        assert gitdir.is_relative_to(repo) and not (gitdir / "logs").exists()
    assert not repo.exists()
