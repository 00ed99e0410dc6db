"""gverify: check every signer's attestation and signature, for one release or
many (SPEC §5; docs/gverify.md).

Exit status: 0 verified, 1 verification failed, 2 bad usage or input.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click

from gitian import gpg, gpgkeys
from gitian.audit import changed_jobs, guess_layout, plan
from gitian.cli import entry, workdir_option
from gitian.descriptor import SANITARY, load_name
from gitian.errors import UsageError, VerifyError
from gitian.home import Home
from gitian.mdreport import render_markdown
from gitian.report import (
    agreed_sums,
    render_json,
    render_run_json,
    render_run_text,
    render_text,
    run_verified,
)
from gitian.run import write_atomic
from gitian.sigsrepo import ChangeSet, changes_since
from gitian.sigtree import Layout
from gitian.text import printable
from gitian.trust import TrustedKeys
from gitian.verdicts import Job, ReleaseReport
from gitian.verify import judge

CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"]}


@click.command(
    context_settings=CONTEXT,
    epilog="Exit status: 0 verified, 1 verification failed, 2 bad usage or input.",
)
@click.argument("descriptors", nargs=-1, type=click.Path(dir_okay=False))
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Also show gpg's own text, a MISMATCH's differences and what went in differently; "
    "twice: all of gpg's text.",
)
@click.option(
    "-m",
    "--markup/--no-markup",
    default=None,
    help="Verdicts in ANSI bold (default: when writing to a terminal).",
)
@click.option(
    "-r",
    "--release",
    "releases",
    multiple=True,
    help="Release name (repeatable; default: current).",
)
@click.option(
    "-d",
    "--destination",
    default=None,
    help="Signature tree holding the releases (default: <home>/sigs/<name>).",
)
@click.option(
    "--all",
    "every",
    is_flag=True,
    help="Verify every release under -d holding attestations of the descriptors.",
)
@click.option(
    "--guix",
    is_flag=True,
    help="-d is a guix.sigs tree (<version>/<signer>/<kind>.SHA256SUMS[.asc]); "
    "detected when no descriptor is given.",
)
@click.option(
    "--changed-since",
    "changed_since",
    default=None,
    metavar="GIT_REF",
    help="Verify only the attestations added since GIT_REF in the git repository "
    "holding -d; refuse any other change to one.",
)
@click.option(
    "-c",
    "--compare-to",
    "compare_to",
    default=None,
    metavar="SIGNER",
    help="Compare the others to SIGNER's manifest (default: the first signer, sorted).",
)
@click.option(
    "-p",
    "--verify-program",
    "verify_program",
    default="gpg",
    show_default=True,
    help="The gpg program to run.",
)
@click.option(
    "--keyring",
    "keyrings",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Use only this keyring file (repeatable) instead of GNUPGHOME's.",
)
@click.option(
    "--import-keys",
    "import_paths",
    multiple=True,
    type=click.Path(),
    help="Import the key files (.asc/.gpg/.pgp/.key/.pub) in DIR, or the key file FILE, "
    "into a temporary GNUPGHOME (repeatable).",
)
@click.option(
    "--keys-dir",
    "keys_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Import DIR/<signer>.{asc,gpg,pgp} and bind each signer to the keys in its file.",
)
@click.option(
    "--trusted-keys",
    "trusted_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Bind signers to keys: 'SIGNER KEYID FPR', 'SIGNER FPR' or keys.txt "
    "'FPR Name (handle)' lines (repeatable).",
)
@click.option(
    "--min-ok",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Succeed when N signers with distinct, unrevoked keys are OK and none is MISMATCH.",
)
@click.option("--json", "as_json", is_flag=True, help="Write the whole report as JSON.")
@click.option(
    "--sha256sums",
    "sums_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write the checksums the signers agreed on (the group that reached --min-ok) to FILE.",
)
@click.option(
    "--report",
    "md_file",
    default=None,
    type=click.Path(dir_okay=False),
    metavar="FILE.md",
    help="Write a Markdown report (signers, verdicts, groups, differences) to FILE.md.",
)
@workdir_option
def cli(
    descriptors: tuple[str, ...],
    verbose: int,
    markup: bool | None,
    releases: tuple[str, ...],
    destination: str | None,
    every: bool,
    guix: bool,
    changed_since: str | None,
    compare_to: str | None,
    verify_program: str,
    keyrings: tuple[str, ...],
    import_paths: tuple[str, ...],
    keys_dir: str | None,
    trusted_files: tuple[str, ...],
    min_ok: int | None,
    as_json: bool,
    sums_file: str | None,
    md_file: str | None,
    workdir: str | None,
) -> int:
    """Verify the signed attestations of every signer of one or more releases, offline."""
    if sys.stdout is None:
        raise VerifyError("standard output is closed: nowhere to write the report")
    names = list(dict.fromkeys(load_name(d) for d in descriptors))
    _check_usage(releases, every, changed_since, compare_to, trusted_files, keys_dir, destination)
    for out in (sums_file, md_file):
        if out is not None and not os.path.isdir(os.path.dirname(os.path.abspath(out))):
            raise UsageError(f"{printable(out)}: its directory does not exist")
    try:
        program = shlex.split(verify_program)
    except ValueError as e:
        raise UsageError(f"--verify-program {printable(verify_program, quote=True)}: {e}") from None
    if not program:
        raise UsageError("--verify-program is empty")
    wanted = list(releases) or ["current"]
    layout = _layout(names, destination, wanted, every, changed_since is not None, guix)
    trusted = TrustedKeys.load_all(trusted_files)
    for k in keyrings:
        if not os.path.isfile(k):
            raise UsageError(f"--keyring {printable(k)}: no such file")
        if gpgkeys.is_armored_key(Path(k)):
            raise UsageError(
                f"--keyring {printable(k)} is an armored key file, not a keyring",
                hint=f"use --import-keys {printable(k)}",
            )
    # Every release to judge is found (and every bad name refused) before gpg starts.
    changes: ChangeSet | None = None
    if changed_since is not None:
        assert destination is not None
        changes = changes_since(
            destination,
            changed_since,
            layout,
            frozenset(names) if names else None,
            keys_dir,
        )
        jobs = changed_jobs(changes, destination, layout)
    else:
        jobs = plan(
            names,
            destination=destination,
            sigs_home=Home.find(workdir).sigs,
            releases=wanted,
            every=every,
            layout=layout,
        )
    single = (
        layout is Layout.GITIAN
        and len(names) == 1
        and len(wanted) == 1
        and not every
        and changes is None
    )
    if markup is None:
        markup = sys.stdout.isatty()

    def run(keyring: gpg.Keyring, trust: TrustedKeys | None) -> int:
        reports = _judge(jobs, keyring, program, compare_to, trust, min_ok, every)
        if single:
            (report,) = reports
            text = (
                render_json(report)
                if as_json
                else render_text(report, verbose=verbose, markup=markup)
            )
        elif as_json:
            text = render_run_json(reports, changes)
        else:
            text = render_run_text(reports, changes, verbose=verbose, markup=markup)
        _write_report(text)
        if md_file is not None:
            _write_file(md_file, render_markdown(reports, changes), "--report")
        if sums_file is not None:
            _write_file(sums_file, agreed_sums(reports), "--sha256sums")
        return 0 if run_verified(reports, changes) else 1

    if not keyrings and not import_paths and keys_dir is None:
        keyring = gpg.Keyring()
        if not keyring.has_keys():
            raise UsageError(
                f"no public keys: {printable(str(keyring.effective_home()))} has no keyring",
                hint="name the signers' keys with --import-keys DIR, --keys-dir DIR, "
                "--keyring FILE or GNUPGHOME",
            )
        return run(keyring, trusted)

    key_files = [f for p in import_paths for f in gpgkeys.key_files(Path(p))]
    extra = tuple(Path(k).resolve() for k in keyrings)
    with gpgkeys.temporary_home() as home:
        if keys_dir is not None:
            bound, files = TrustedKeys.from_keys_dir(Path(keys_dir), home, program=program)
            trusted = bound if trusted is None else trusted.merged(bound)
            key_files += files
        if key_files:
            gpgkeys.import_keys(home, key_files, program=program)
            # The named keyrings beside the imported keys.
            return run(
                gpg.Keyring(home=home, keyrings=(home / "pubring.kbx", *extra) if extra else ()),
                trusted,
            )
        # Only the named keyrings: an empty throwaway home keeps gpg from
        # creating or touching the user's own.
        return run(gpg.Keyring(home=home, keyrings=extra), trusted)


def _check_usage(
    releases: tuple[str, ...],
    every: bool,
    changed_since: str | None,
    compare_to: str | None,
    trusted_files: tuple[str, ...],
    keys_dir: str | None,
    destination: str | None,
) -> None:
    for release in releases:
        if not SANITARY.fullmatch(release) or release in (".", ".."):
            raise UsageError(f"--release {printable(release, quote=True)} is not sanitary")
    chosen = [o for o, on in (("--release", releases), ("--all", every)) if on]
    if changed_since is not None:
        chosen.append("--changed-since")
        if destination is None:
            raise UsageError("--changed-since needs -d, the sigs repository's checkout")
        if not trusted_files and keys_dir is None:
            raise UsageError(
                "--changed-since needs the keys each signer is bound to",
                hint="give --keys-dir DIR (the repository's <signer>.asc/.gpg/.pgp keys) "
                "or --trusted-keys FILE",
            )
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join(chosen)} cannot be combined")
    if compare_to is not None and (
        "/" in compare_to or compare_to in ("", ".", "..") or "\0" in compare_to
    ):
        raise UsageError(f"--compare-to {printable(compare_to, quote=True)} is not a signer name")


def _layout(
    names: Sequence[str],
    destination: str | None,
    releases: Sequence[str],
    every: bool,
    changed: bool,
    guix: bool,
) -> Layout:
    """GITIAN with descriptors, GUIX with --guix or a tree that looks like guix.sigs;
    GITIAN without descriptors only for --changed-since (any name is judged)."""
    if guix or not names:
        if destination is None:
            what = "--guix needs" if guix else "without a descriptor, gverify needs"
            raise UsageError(f"{what} -d, the signature tree (a guix.sigs checkout)")
        if names:
            raise UsageError("--guix takes no descriptor (the kinds are read from the tree)")
        if guix or guess_layout(destination, releases, every or changed) is Layout.GUIX:
            return Layout.GUIX
        if not changed:
            raise UsageError(
                "missing DESCRIPTOR",
                hint=f"{printable(destination)} holds no <signer>/<kind>.SHA256SUMS "
                "(give --guix for a guix.sigs tree)",
            )
    return Layout.GITIAN


def _judge(
    jobs: list[Job],
    keyring: gpg.Keyring,
    program: list[str],
    compare_to: str | None,
    trusted: TrustedKeys | None,
    min_ok: int | None,
    every: bool,
) -> list[ReleaseReport]:
    """Judge the jobs; with --all on a terminal, with a progress bar on standard error."""
    with ExitStack() as stack:
        bar: list[Any] = []

        def progress(n: int, total: int) -> None:
            if not bar:
                bar.append(
                    stack.enter_context(
                        click.progressbar(length=total, label="Verifying", file=sys.stderr)
                    )
                )
            bar[0].update(n)

        show: Callable[[int, int], None] | None = None
        if every and sys.stderr is not None and sys.stderr.isatty():
            show = progress
        return judge(
            jobs,
            keyring=keyring,
            program=program,
            compare_to=compare_to,
            trusted=trusted,
            min_ok=min_ok,
            progress=show,
        )


def _write_file(path: str, text: str, what: str) -> None:
    try:
        write_atomic(Path(path), text.encode("utf-8", "surrogateescape"))
    except OSError as e:
        raise VerifyError(f"{what}: cannot write {printable(path)}: {e.strerror}") from None


def _write_report(text: str) -> None:
    """Write the report; a full disk or an unwritable output is one error line
    (a closed pipe is left to the caller, as for every tool)."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise VerifyError(f"cannot write the report to standard output: {reason}") from None


main = entry(cli, prog="gverify")

if __name__ == "__main__":
    main()
