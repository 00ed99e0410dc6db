#!/usr/bin/env python3
"""gverify on every signed assert of real sigs repositories' whole history.

For each sigs repository (a git directory; a bare clone will do) this finds
every distinct (assert, signature) pair that ever sat side by side in one
commit - ``<signer>/<name>-build.assert`` next to ``<name>-build.assert.sig``
- and asks two questions of each:

* plain gpg: does ``gpg --verify SIG ASSERT`` exit 0 with a GOODSIG,
  EXPKEYSIG or REVKEYSIG and a VALIDSIG (status on its own descriptor)?
* gverify's engine (:func:`gitian.verify.verify_release`, on a tree holding
  the pairs): which verdict does it give?

Keys: every version of every key file in the given key repositories' history
(``--keys GITDIR[:PATH,...]``, default paths: the usual key directories) is
imported into one temporary GNUPGHOME that both sides use.

Printed per repository: pairs, gpg-good, and gpg-good pairs that gverify
cannot read (BAD ASSERT: the goal is 0), that gverify calls BAD SIGNATURE
(with the reasons: a signature made after its key expired is one, by
design), and how many distinct asserts start with each YAML header.
``--samples DIR`` copies one gpg-good pair per repository and assert dialect,
with the signing key, into DIR (for tests/data).

Usage: bench/real-history.py [--keys GITDIR[:PATH,...]]... [--jobs N] [--samples DIR] SIGS_GITDIR...
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gitian import gpg, verify
from gitian.descriptor import SANITARY
from gitian.errors import InputError
from gitian.manifest import report_fields

KEY_DIRS = (
    "gitian-keys",
    "gitian-pubkeys",
    "builder-keys",
    "contrib/gitian-keys",
    "contrib/builder-keys",
    "contrib/gitian-downloader",
)
KEY_FILE = re.compile(r".*\.(asc|gpg|pgp|key|pub)$|.*/[^/.]+(_v[0-9.]+)?$")
NOT_KEYS = re.compile(r".*(\.assert(\.sig|\.asc)?|\.txt|\.md|\.py|\.sh|\.yml|README.*)$")
GOOD = (b"[GNUPG:] GOODSIG ", b"[GNUPG:] EXPKEYSIG ", b"[GNUPG:] REVKEYSIG ")


def git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args], input=stdin, capture_output=True, check=True
    ).stdout


def blobs(repo: Path, ids: list[str]) -> dict[str, bytes]:
    """The content of each blob (one ``git cat-file --batch``)."""
    out = git(repo, "cat-file", "--batch", stdin="".join(i + "\n" for i in ids).encode())
    got: dict[str, bytes] = {}
    i = 0
    for oid in ids:
        nl = out.index(b"\n", i)
        header = out[i:nl].split()
        size = int(header[2])
        got[oid] = out[nl + 1 : nl + 1 + size]
        i = nl + 1 + size + 1
    return got


def key_blobs(repo: Path, paths: list[str]) -> set[str]:
    """Every version of every key file under ``paths`` in ``repo``'s history."""
    raw = git(
        repo, "log", "--all", "--no-renames", "--raw", "--abbrev=40", "--format=", "--", *paths
    )
    # Only files that sit in a key directory or look like a key file.
    out: set[str] = set()
    for line in raw.decode("utf-8", "replace").split("\n"):
        if not line.startswith(":"):
            continue
        meta, path = line.split("\t", 1)
        new = meta.split()[3]
        in_key_dir = any(path.startswith(d + "/") for d in KEY_DIRS)
        looks_like_key = re.fullmatch(r"[^/]*\.(asc|gpg|pgp)", path) is not None
        if (
            set(new) != {"0"}
            and (in_key_dir or looks_like_key)
            and KEY_FILE.fullmatch(path)
            and not NOT_KEYS.fullmatch(path)
        ):
            out.add(new)
    return out


def pairs(repo: Path) -> dict[tuple[str, str], str]:
    """(assert blob, signature blob) -> the first path seen, for every distinct
    pair side by side in some commit.  A pair is new only where one of its
    two files changed, so the commits' changes and a look-up of the other
    file at that commit find them all."""
    raw = git(repo, "log", "--all", "-m", "--no-renames", "--raw", "--abbrev=40", "--format=C %H")
    asks: list[tuple[str, str]] = []
    commit = ""
    for line in raw.decode("utf-8", "surrogateescape").split("\n"):
        if line.startswith("C "):
            commit = line[2:]
        elif line.startswith(":") and "\t" in line:
            path = line.split("\t", 1)[1]
            if path.endswith(".assert.sig"):
                asks.append((commit, path[: -len(".sig")]))
            elif path.endswith(".assert"):
                asks.append((commit, path))
    asks = sorted(set(asks))
    query = "".join(f"{c}:{p}\n{c}:{p}.sig\n" for c, p in asks).encode("utf-8", "surrogateescape")
    answers = git(repo, "cat-file", "--batch-check=%(objectname) %(objecttype)", stdin=query)
    lines = answers.decode().split("\n")
    out: dict[tuple[str, str], str] = {}
    for k, (_, path) in enumerate(asks):
        a, s = lines[2 * k].split(), lines[2 * k + 1].split()
        if len(a) == 2 and len(s) == 2 and a[1] == s[1] == "blob":
            out.setdefault((a[0], s[0]), path)
    return out


def plain_gpg(home: Path, sig: Path, data: Path) -> tuple[bool, str]:
    """gpg --verify, read carefully: good, and the signing key's fingerprint."""
    r, w = os.pipe()
    try:
        proc = subprocess.Popen(
            [
                "gpg",
                *gpg.OFFLINE_OPTIONS,
                "--homedir",
                str(home),
                "--status-fd",
                str(w),
                "--verify",
                str(sig),
                str(data),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(w,),
        )
        os.close(w)
        w = -1
        with os.fdopen(r, "rb") as f:
            r = -1
            status = f.read()
        rc = proc.wait()
    finally:
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)
    lines = status.split(b"\n")
    valid = [ln.split(b" ")[2].decode() for ln in lines if ln.startswith(b"[GNUPG:] VALIDSIG ")]
    good = rc == 0 and any(ln.startswith(GOOD) for ln in lines) and len(valid) >= 1
    return good, valid[0] if valid else ""


def header(data: bytes) -> str:
    first = data.split(b"\n", 1)[0]
    return first.decode("utf-8", "replace")[:20] if first.startswith(b"---") else "(no --- line)"


def dialect(data: bytes) -> str:
    """A name for how an assert is spelled: its header, the non-specific tag,
    the null optionals with a trailing space."""
    name = {
        "--- !!omap": "omap2",
        "--- !omap": "omap1",
        "--- !omap ": "omap1-space",
    }.get(header(data), "other")
    if b": ! '" in data or b': ! "' in data:
        name += "-bang"
    if b"optionals: \n" in data:
        name += "-optionals-space"
    return name


def readable(data: bytes) -> bool:
    try:
        report_fields(data, "assert")
    except InputError:
        return False
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sigs", nargs="+", type=Path, help="git directories of sigs repositories")
    ap.add_argument("--keys", action="append", default=[], help="GITDIR[:PATH,...] with keys")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--samples", type=Path, default=None)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="real-history-"))
    home = work / "gnupg"
    home.mkdir(mode=0o700)
    try:
        t0 = time.monotonic()
        n_keys = 0
        sources = [*args.keys, *(str(s) for s in args.sigs)]
        for spec in sources:
            repo_s, _, paths_s = spec.partition(":")
            repo = Path(repo_s)
            paths = paths_s.split(",") if paths_s else []  # [] for the whole history
            ids = sorted(key_blobs(repo, paths))
            for oid, data in blobs(repo, ids).items():
                (work / f"key-{oid}").write_bytes(data)
            n_keys += len(ids)
        files = sorted(work.glob("key-*"))
        for k in range(0, len(files), 200):  # gpg gives up on a whole run for one bad file
            subprocess.run(
                [
                    "gpg",
                    *gpg.OFFLINE_OPTIONS,
                    "--homedir",
                    str(home),
                    "--import-options",
                    "import-minimal",
                    "--import",
                    *map(str, files[k : k + 200]),
                ],
                capture_output=True,
            )
        subprocess.run(
            ["gpg", "--homedir", str(home), "--batch", "--check-trustdb"], capture_output=True
        )
        listed = subprocess.run(
            ["gpg", "--homedir", str(home), "--with-colons", "--list-keys"], capture_output=True
        ).stdout.count(b"\npub:")
        print(
            f"keys: {n_keys} key-file versions from {len(sources)} repositories, "
            f"{listed} public keys imported ({time.monotonic() - t0:.0f} s)"
        )
        print()
        print(
            f"{'repository':34} {'pairs':>6} {'gpg-good':>8} {'unreadable':>10} "
            f"{'BAD SIG':>7} {'OK/MISMATCH':>11} {'only-gverify':>12} {'asserts read':>14}"
        )
        totals: dict[str, dict[str, object]] = {}
        for repo in args.sigs:
            totals[repo.parent.name or repo.name] = run_repo(repo, work, home, args)
        print()
        for name, t in totals.items():
            for what in ("bad", "unreadable"):
                for reason, n in sorted(t[what].items(), key=lambda x: -x[1])[:8]:  # type: ignore[attr-defined]
                    print(f"{name}: gpg-good, gverify {what}: {n} x {reason}")
            print(f"{name}: distinct asserts by first line: {dict(t['headers'])}")  # type: ignore[call-overload]
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def run_repo(repo: Path, work: Path, home: Path, args: argparse.Namespace) -> dict[str, object]:
    t0 = time.monotonic()
    found = pairs(repo)
    content = blobs(repo, sorted({b for pair in found for b in pair}))
    tree = work / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    # One synthetic release per package name and thousand pairs, one "signer" per pair.
    by_package: dict[str, list[tuple[str, str, str]]] = collections.defaultdict(list)
    for (a, s), path in found.items():
        name = path.rsplit("/", 1)[-1][: -len("-build.assert")]
        by_package[name].append((a, s, path))
    results: dict[tuple[str, str], verify.SignerResult] = {}
    plain: dict[tuple[str, str], tuple[bool, str]] = {}
    jobs: list[tuple[tuple[str, str], Path, Path]] = []
    releases = []
    for name, items in sorted(by_package.items()):
        if not SANITARY.fullmatch(name):
            continue
        for start in range(0, len(items), verify.MAX_SIGNERS):
            rel = tree / name / f"r{start}"
            for j, (a, s, _) in enumerate(items[start : start + verify.MAX_SIGNERS]):
                d = rel / f"p{j:04d}"
                d.mkdir(parents=True)
                (d / f"{name}-build.assert").write_bytes(content[a])
                (d / f"{name}-build.assert.sig").write_bytes(content[s])
                jobs.append(((a, s), d / f"{name}-build.assert.sig", d / f"{name}-build.assert"))
            releases.append((rel, name, items[start : start + verify.MAX_SIGNERS]))
    keyring = gpg.Keyring(home=home)
    for rel, name, items in releases:
        report = verify.verify_release(str(rel), name, "release", keyring=keyring, jobs=args.jobs)
        for (a, s, _), res in zip(items, report.signers, strict=True):
            results[(a, s)] = res
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for key, good in zip(
            [j[0] for j in jobs], pool.map(lambda j: plain_gpg(home, j[1], j[2]), jobs), strict=True
        ):
            plain[key] = good
    good_pairs = [k for k in results if plain[k][0]]
    unreadable: collections.Counter[str] = collections.Counter()
    bad: collections.Counter[str] = collections.Counter()
    ok = 0
    for k in good_pairs:
        res = results[k]
        if res.verdict is verify.Verdict.BAD_ASSERT:
            unreadable[re.sub(r"^[^:]*: ", "", res.reason)[:90]] += 1
        elif res.verdict in (verify.Verdict.OK, verify.Verdict.MISMATCH):
            ok += 1
        else:
            why = re.sub(r"[0-9A-F]{16,64}", "<key>", res.reason)
            bad[re.sub(r"\d{4}-\d\d-\d\d", "<date>", why)[:110]] += 1
    # gverify accepting what plain gpg does not: must never happen.
    only_gverify = sum(
        1
        for k, res in results.items()
        if res.verdict in (verify.Verdict.OK, verify.Verdict.MISMATCH) and not plain[k][0]
    )
    asserts = {a for a, _ in found}
    headers = collections.Counter(header(content[a]) for a in asserts)
    read = sum(readable(content[a]) for a in asserts)
    label = repo.parent.name if repo.name in (".git", "repo") else repo.name
    print(
        f"{label:34} {len(found):6} {len(good_pairs):8} {sum(unreadable.values()):10} "
        f"{sum(bad.values()):7} {ok:11} {only_gverify:12} {read:6} of {len(asserts):5}"
        f"   ({time.monotonic() - t0:.0f} s)"
    )
    if args.samples is not None:
        save_samples(args.samples, label, found, content, plain, results, home)
    return {"unreadable": unreadable, "bad": bad, "headers": headers}


def save_samples(
    dest: Path,
    label: str,
    found: dict[tuple[str, str], str],
    content: dict[str, bytes],
    plain: dict[tuple[str, str], tuple[bool, str]],
    results: dict[tuple[str, str], verify.SignerResult],
    home: Path,
) -> None:
    """The smallest gpg-good pair of each assert dialect, with its signing key,
    laid out as a sigs tree: DEST/<repository>/<dialect>/<release>/<signer>/."""
    best: dict[str, tuple[int, tuple[str, str], str]] = {}
    for (a, s), path in found.items():
        good = plain[(a, s)][0]
        ok = results[(a, s)].verdict in (verify.Verdict.OK, verify.Verdict.MISMATCH)
        if good and ok and path.count("/") >= 2:
            kind = dialect(content[a])
            if kind not in best or len(content[a]) < best[kind][0]:
                best[kind] = (len(content[a]), (a, s), path)
    for kind, (_size, (a, s), path) in sorted(best.items()):
        release, signer, file = path.split("/")[-3:]
        out = dest / label / kind / release / signer
        out.mkdir(parents=True, exist_ok=True)
        (out / file).write_bytes(content[a])
        (out / (file + ".sig")).write_bytes(content[s])
        fpr = plain[(a, s)][1]
        key = subprocess.run(
            ["gpg", "--homedir", str(home), "--export", fpr], capture_output=True
        ).stdout
        (dest / label / kind / f"{fpr}.gpg").write_bytes(key)
        print(f"  sample {label}/{kind}: {path} ({len(content[a])} bytes, key {fpr})")


if __name__ == "__main__":
    sys.exit(main())
