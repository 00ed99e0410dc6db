"""Build inputs: the files named by ``files:`` and one git checkout per remote.

Every git command is an argv list run in ``inputs/<dir>``; URLs and commits
were validated by :mod:`gitian.descriptor` (no option-like values, no
transports that run programs), and git itself is told never to use the
``ext::`` transport, even for submodules, and to run no hooks.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gitian import log
from gitian.descriptor import Remote
from gitian.errors import CommandError, InputError
from gitian.hashing import sha256_file
from gitian.home import Home
from gitian.run import require, run

#: config given to every git command (inherited by the git processes it starts)
GIT_CONFIG: tuple[str, ...] = (
    "-c",
    "protocol.ext.allow=never",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "advice.detachedHead=false",
)
FULL_HASH = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass(frozen=True)
class FetchOptions:
    skip_fetch: bool = False
    fetch_branches: bool = False
    fetch_tags: bool = False
    quiet: bool = False


@dataclass(frozen=True)
class CheckedOut:
    """One remote after checkout."""

    dir: str
    commit: str  # full hash
    author_date: str  # "YYYY-MM-DD HH:MM:SS", UTC


def git(
    repo: Path, *args: str, capture: bool = False, quiet: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git <args>`` in ``repo``.  stdout is captured when ``capture``;
    stderr is shown unless ``quiet`` (git prints progress only on a terminal).

    git never looks for a repository above ``repo``'s parent: a checkout dir
    that is not a repository must not reach, say, the gitian-py checkout
    that holds inputs/."""
    return run(
        ["git", *GIT_CONFIG, *args],
        cwd=repo,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE if quiet else None,
        env={"TZ": "UTC", "GIT_CEILING_DIRECTORIES": os.fspath(repo.resolve().parent)},
    )


# --------------------------------------------------------------------------
# checks done before anything starts


def check_files(home: Home, files: Sequence[str]) -> None:
    """Every ``files:`` entry must be a readable regular file in ``inputs/``."""
    for name in files:
        p = home.inputs / name
        try:
            st = p.stat()
        except FileNotFoundError:
            raise InputError(
                f"input file {name!r} (named in 'files:') is missing from {home.inputs}",
                hint=f"put it at {p}",
            ) from None
        except OSError as e:
            raise InputError(f"input file {p}: {e.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"input file {p} is not a regular file")
        if not os.access(p, os.R_OK):
            raise InputError(f"input file {p} is not readable")


def check_remotes(home: Home, remotes: Sequence[Remote]) -> None:
    """Each remote needs a commit, and ``inputs/<dir>`` must be a real directory."""
    for r in remotes:
        if not r.commit:
            raise InputError(
                f"must specify a commit for directory {r.dir}",
                hint=f"add 'commit:' to the remote or pass --commit {r.dir}=<commit>",
            )
        p = home.inputs / r.dir
        if p.is_symlink():
            raise InputError(
                f"{p} is a symbolic link; refused (a checkout must live inside inputs/)",
                hint="replace the link with a clone, or remove it to let gbuild make one",
            )
        if p.exists() and not p.is_dir():
            raise InputError(f"{p} exists and is not a directory")
        if p.is_dir() and not (p / ".git").exists() and any(p.iterdir()):
            raise InputError(
                f"{p} exists but is not a git checkout",
                hint="move it away; gbuild makes the checkout itself",
            )
    if remotes:
        require("git", why="for the descriptor's remotes")


# --------------------------------------------------------------------------
# manifests


def file_lines(home: Home, files: Sequence[str]) -> list[tuple[str, str]]:
    """``(sha256, name)`` for each input file, in descriptor order."""
    return [(sha256_file(os.path.realpath(home.inputs / f)), f) for f in files]


# --------------------------------------------------------------------------
# remotes


def _is_tag(repo: Path, url: str, commit: str) -> bool:
    res = git(repo, "ls-remote", "--", url, commit, capture=True)
    return b"\trefs/tags/" in res.stdout


def checkout(home: Home, remote: Remote, opts: FetchOptions) -> CheckedOut:
    """Bring ``inputs/<dir>`` to the remote's commit (SPEC §3 step 3)."""
    assert remote.commit is not None  # check_remotes ran
    repo = home.inputs / remote.dir
    if repo.is_symlink():  # checked before; checked again right before use
        raise InputError(f"{repo} is a symbolic link; refused")
    if not repo.exists() or (repo.is_dir() and not any(repo.iterdir())):
        home.inputs.mkdir(parents=True, exist_ok=True)
        git(home.inputs, "init", "-q", "--", remote.dir)
    elif not (repo / ".git").exists():
        raise InputError(
            f"{repo} exists but is not a git checkout",
            hint="move it away; gbuild makes the checkout itself",
        )
    commit = remote.commit
    url = remote.url
    try:
        if not opts.skip_fetch:
            if opts.fetch_branches:
                git(
                    repo, "fetch", "-f", "--update-head-ok", "--", url,
                    "+refs/heads/*:refs/heads/*", quiet=opts.quiet,
                )  # fmt: skip
            refspec = [commit]
            if opts.fetch_tags:
                git(
                    repo, "fetch", "-f", "--update-head-ok", "--", url,
                    "+refs/tags/*:refs/tags/*", quiet=opts.quiet,
                )  # fmt: skip
            elif not FULL_HASH.fullmatch(commit) and _is_tag(repo, url, commit):
                refspec = ["tag", commit]  # fetched as a tag, so tag objects stay tags
            git(
                repo, "fetch", "-f", "--no-tags", "--update-head-ok", "--", url, *refspec,
                quiet=opts.quiet,
            )  # fmt: skip
            git(repo, "checkout", "-q", "FETCH_HEAD", "--")
        else:
            git(repo, "checkout", "-q", commit, "--")
        git(repo, "submodule", "update", "--init", "--recursive", "--force", quiet=opts.quiet)
        full = git(repo, "log", "--format=%H", "-1", capture=True).stdout.decode().strip()
        date = (
            git(repo, "log", "--date=format-local:%F %T", "--format=%ad", "-1", capture=True)
            .stdout.decode()
            .strip()
        )
    except CommandError as e:
        detail = "".join(f"\n    {line}" for line in e.output.rstrip().splitlines()[-10:])
        raise InputError(
            f"remote {remote.dir!r}: {e.message}{detail}",
            hint=f"check the URL {url!r} and the commit {commit!r}"
            + ("; --skip-fetch needs the commit already in inputs/" if opts.skip_fetch else ""),
        ) from e
    if not FULL_HASH.fullmatch(full):
        raise InputError(f"remote {remote.dir!r}: could not read the checked-out commit")
    log.debug(f"{remote.dir}: {full} ({date})")
    return CheckedOut(dir=remote.dir, commit=full, author_date=date)
