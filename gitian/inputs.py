"""Build inputs: the files named by ``files:`` and one git checkout per remote.

Every git command is an argv list run in ``inputs/<dir>``; URLs and commits
were validated by :mod:`gitian.descriptor` (no option-like values, no
transports that run programs), and git itself is told never to use the
``ext::`` transport, even for submodules, and to run no hooks.

``inputs/<dir>`` is the fetch cache: it keeps what every earlier build
fetched.  The target gets a repository made from it for each build
(:func:`handover`) that holds exactly the refs the command asked for, so
``git describe`` gives the same answer to every builder of the same commit.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
#: config for making the handed-over repository: no reflogs (they would carry
#: this host's user, times and paths), and local clones of the cache's
#: submodules (git refuses the file transport for submodules by default).
HANDOVER_CONFIG: tuple[str, ...] = (
    "-c",
    "core.logAllRefUpdates=false",
    "-c",
    "protocol.file.allow=always",
)
GITLINK = "160000"


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
    #: the refs the target's repository holds besides its detached HEAD (see
    #: :func:`handover_refs`): full ref names, or prefixes ending in "/"
    refs: tuple[str, ...] = ()


def git(
    repo: Path,
    *args: str,
    capture: bool = False,
    quiet: bool = True,
    input: bytes | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git <args>`` in ``repo``.  stdout is captured when ``capture``;
    stderr is shown unless ``quiet`` (git prints progress only on a terminal).

    git never looks for a repository above ``repo``'s parent: a checkout dir
    that is not a repository must not reach, say, the gitian-py checkout
    that holds inputs/."""
    return run(
        ["git", *GIT_CONFIG, *args],
        cwd=repo,
        input=input,
        check=check,
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
    named_by_tag = False
    try:
        if not opts.skip_fetch:
            # --prune: the cache's branches and tags are then the remote's,
            # not also those an earlier build fetched.
            if opts.fetch_branches:
                git(
                    repo, "fetch", "-f", "--prune", "--update-head-ok", "--", url,
                    "+refs/heads/*:refs/heads/*", quiet=opts.quiet,
                )  # fmt: skip
            refspec = [commit]
            if opts.fetch_tags:
                git(
                    repo, "fetch", "-f", "--prune", "--update-head-ok", "--", url,
                    "+refs/tags/*:refs/tags/*", quiet=opts.quiet,
                )  # fmt: skip
            elif not FULL_HASH.fullmatch(commit) and _is_tag(repo, url, commit):
                refspec = ["tag", commit]  # fetched as a tag, so tag objects stay tags
                named_by_tag = True
            git(
                repo, "fetch", "-f", "--no-tags", "--update-head-ok", "--", url, *refspec,
                quiet=opts.quiet,
            )  # fmt: skip
            git(repo, "checkout", "-q", "FETCH_HEAD", "--")
        else:
            git(repo, "checkout", "-q", commit, "--")
        git(repo, "submodule", "update", "--init", "--recursive", "--force", quiet=opts.quiet)
        full = git(repo, "log", "--format=%H", "-1", capture=True).stdout.decode().strip()
        if not named_by_tag and not FULL_HASH.fullmatch(commit):
            # With --skip-fetch or --fetch-tags the cache's tags are what is known.
            named_by_tag = _tag_of(repo, commit) == full
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
    refs = handover_refs(commit if named_by_tag else None, opts)
    return CheckedOut(dir=remote.dir, commit=full, author_date=date, refs=refs)


def _tag_of(repo: Path, name: str) -> str | None:
    """The commit the cache's tag ``name`` points to, or None without one."""
    res = git(
        repo, "rev-parse", "--verify", "-q", f"refs/tags/{name}^{{commit}}", capture=True,
        check=False,
    )  # fmt: skip
    return res.stdout.decode().strip() if res.returncode == 0 else None


# --------------------------------------------------------------------------
# the repository handed to the target


def handover_refs(tag: str | None, opts: FetchOptions) -> tuple[str, ...]:
    """The refs the target's repository holds besides HEAD, detached at the
    commit (SPEC §2): the tag the commit was named by, all the remote's tags
    only with ``--fetch-tags``, its branches only with ``--fetch-branches``.
    Full ref names, or prefixes ending in "/"."""
    refs = []
    if opts.fetch_branches:
        refs.append("refs/heads/")
    if opts.fetch_tags:
        refs.append("refs/tags/")
    elif tag is not None:
        refs.append(f"refs/tags/{tag}")
    return tuple(refs)


@contextmanager
def handover(home: Home, checked: CheckedOut) -> Iterator[Path]:
    """A repository for the target, made from the cache ``inputs/<dir>`` for
    this build: the work tree at the commit (submodules too), HEAD detached
    there, and exactly :attr:`CheckedOut.refs`: no other branch or tag, no
    remote, reflog, FETCH_HEAD or hook of an earlier build.

    It is cloned from the cache (hard links), then holds only the objects
    those refs reach.  It lives in a temporary directory under ``var/`` and
    is removed when the block ends.
    """
    src = home.inputs / checked.dir
    home.var.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home.var, prefix=".handover-") as tmp:
        dest = Path(tmp) / checked.dir
        try:
            _clone_exact(src, dest, checked.commit, checked.refs)
            _submodules(src, dest)
        except CommandError as e:
            detail = "".join(f"\n    {line}" for line in e.output.rstrip().splitlines()[-10:])
            raise InputError(
                f"remote {checked.dir!r}: making the repository for the target failed: "
                f"{e.message}{detail}",
                hint=f"check {src} (it is the fetch cache; removing it makes gbuild fetch anew)",
            ) from e
        yield dest


def _clone_exact(src: Path, dest: Path, commit: str, refs: Sequence[str]) -> None:
    """``src`` cloned to ``dest`` with HEAD detached at ``commit`` and only ``refs``."""
    git(
        dest.parent, *HANDOVER_CONFIG, "clone", "-q", "--local", "--no-checkout", "--template=",
        "--", os.fspath(src.resolve()), dest.name,
    )  # fmt: skip
    git(dest, "remote", "remove", "origin")  # its url, refs/remotes/origin/*, branch.*.remote
    git(dest, *HANDOVER_CONFIG, "update-ref", "--no-deref", "HEAD", commit)
    _keep_only(
        dest,
        {
            name: oid
            for oid, name in _for_each_ref(src)
            if any(name.startswith(r) if r.endswith("/") else name == r for r in refs)
        },
    )
    git(dest, *HANDOVER_CONFIG, "checkout", "-q", "--detach", commit, "--")


def _keep_only(repo: Path, wanted: dict[str, str]) -> None:
    """Leave ``repo`` with HEAD and the ``wanted`` refs (name -> object id) only,
    and only the objects they reach.

    The objects go too because git abbreviates ids by the number of objects
    a repository holds (``git describe`` prints ``g`` and 7 or more hex
    digits): what an earlier build fetched must not lengthen them.  Repacking
    reuses the cache's deltas: a few seconds for Bitcoin's history.
    """
    updates = [f"delete {name}\n" for _, name in _for_each_ref(repo) if name not in wanted]
    updates += [f"update {name} {oid}\n" for name, oid in sorted(wanted.items())]
    if updates:
        git(
            repo, *HANDOVER_CONFIG, "update-ref", "--no-deref", "--stdin",
            input="".join(updates).encode("utf-8", "surrogateescape"),
        )  # fmt: skip
    out = git(repo, "rev-parse", "--absolute-git-dir", capture=True).stdout
    gitdir = Path(os.fsdecode(out.rstrip(b"\n")))
    shutil.rmtree(gitdir / "logs", ignore_errors=True)  # reflogs would keep objects alive
    git(repo, *HANDOVER_CONFIG, "repack", "-q", "-a", "-d")
    git(repo, "prune", "--expire=now")  # unreachable loose objects
    (gitdir / "objects" / "info" / "alternates").unlink(missing_ok=True)  # repack -a copied them


def _for_each_ref(repo: Path) -> list[tuple[str, str]]:
    """``(object id, ref name)`` of every ref in ``repo``."""
    out = git(repo, "for-each-ref", "--format=%(objectname) %(refname)", capture=True).stdout
    return [
        (oid, name)
        for oid, _, name in (line.partition(" ") for line in out.decode().splitlines())
    ]


def _submodules(src: Path, dest: Path) -> None:
    """Give ``dest`` the submodules ``src`` has checked out, cloned from those
    checkouts (never from the network), each with its commit checked out and
    no ref but HEAD; their remote is the URL ``.gitmodules`` names."""
    if not (dest / ".gitmodules").is_file():
        return
    staged = os.fsdecode(git(dest, "ls-files", "-s", "-z", capture=True).stdout)
    gitlinks = {
        path for meta, _, path in (e.partition("\t") for e in staged.split("\0") if e)
        if meta.startswith(GITLINK + " ")
    }  # fmt: skip
    listing = git(
        dest, "config", "-f", ".gitmodules", "-z", "--get-regexp", r"^submodule\..*\.path$",
        capture=True, check=False,
    ).stdout.decode("utf-8", "surrogateescape")  # fmt: skip
    root = src.resolve()
    for item in filter(None, listing.split("\0")):
        key, _, path = item.partition("\n")
        name = key.removeprefix("submodule.").removesuffix(".path")
        origin = (src / path).resolve()
        if path not in gitlinks or not origin.is_relative_to(root) or origin == root:
            continue
        if not (origin / ".git").exists():
            continue  # not checked out in the cache: not in the target either
        git(dest, "submodule", "init", "--", path)
        git(dest, "config", f"submodule.{name}.url", os.fspath(origin))
        git(dest, *HANDOVER_CONFIG, "submodule", "update", "--", path)
        git(dest, "submodule", "sync", "--", path)  # back to the URL .gitmodules names
        _keep_only(dest / path, {})
        _submodules(origin, dest / path)
