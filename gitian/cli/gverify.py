"""gverify: check every signer's assert and signature for one release (SPEC §5).

Exit status: 0 verified, 1 verification failed, 2 bad usage or input.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from gitian import gpg
from gitian.cli import entry, workdir_option
from gitian.descriptor import SANITARY, load_name
from gitian.errors import UsageError, VerifyError
from gitian.home import Home
from gitian.report import render_json, render_text
from gitian.text import printable
from gitian.trust import TrustedKeys
from gitian.verify import verify_release

CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"]}


@click.command(
    context_settings=CONTEXT,
    epilog="Exit status: 0 verified, 1 verification failed, 2 bad usage or input.",
)
@click.argument("descriptor", type=click.Path(dir_okay=False))
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Also show gpg's own text and a MISMATCH's differences; twice: all of gpg's text.",
)
@click.option(
    "-m",
    "--markup/--no-markup",
    default=None,
    help="Verdicts in ANSI bold (default: when writing to a terminal).",
)
@click.option("-r", "--release", default="current", show_default=True, help="Release name.")
@click.option(
    "-d", "--destination", default=None, help="Signature tree (default: <home>/sigs/<name>)."
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
@workdir_option
def cli(
    descriptor: str,
    verbose: int,
    markup: bool | None,
    release: str,
    destination: str | None,
    compare_to: str | None,
    verify_program: str,
    keyrings: tuple[str, ...],
    import_paths: tuple[str, ...],
    trusted_files: tuple[str, ...],
    min_ok: int | None,
    as_json: bool,
    workdir: str | None,
) -> int:
    """Verify the signed asserts of every signer of a release, offline."""
    if sys.stdout is None:
        raise VerifyError("standard output is closed: nowhere to write the report")
    name = load_name(descriptor)
    if not SANITARY.fullmatch(release) or release in (".", ".."):
        raise UsageError(f"--release {printable(release, quote=True)} is not sanitary")
    if compare_to is not None and (
        "/" in compare_to or compare_to in ("", ".", "..") or "\0" in compare_to
    ):
        raise UsageError(f"--compare-to {printable(compare_to, quote=True)} is not a signer name")
    try:
        program = shlex.split(verify_program)
    except ValueError as e:
        raise UsageError(f"--verify-program {printable(verify_program, quote=True)}: {e}") from None
    if not program:
        raise UsageError("--verify-program is empty")
    if destination is None:
        destination = os.fspath(Home.find(workdir).sigs / name)
    trusted = TrustedKeys.load_all(trusted_files)
    for k in keyrings:
        if not os.path.isfile(k):
            raise UsageError(f"--keyring {printable(k)}: no such file")
        if gpg.is_armored_key(Path(k)):
            raise UsageError(
                f"--keyring {printable(k)} is an armored key file, not a keyring",
                hint=f"use --import-keys {printable(k)}",
            )
    if markup is None:
        markup = sys.stdout.isatty()

    def verify(keyring: gpg.Keyring) -> int:
        report = verify_release(
            os.path.join(destination, release),
            name,
            release,
            keyring=keyring,
            program=program,
            compare_to=compare_to,
            trusted=trusted,
            min_ok=min_ok,
        )
        if as_json:
            _write_report(render_json(report))
        else:
            _write_report(render_text(report, verbose=verbose, markup=markup))
        return report.exit_code

    if not keyrings and not import_paths:
        keyring = gpg.Keyring()
        if not keyring.has_keys():
            raise UsageError(
                f"no public keys: {printable(str(keyring.effective_home()))} has no keyring",
                hint="name the signers' keys with --import-keys DIR, --keyring FILE or GNUPGHOME",
            )
        return verify(keyring)

    key_files = [f for p in import_paths for f in gpg.key_files(Path(p))]
    extra = tuple(Path(k).resolve() for k in keyrings)
    with gpg.temporary_home() as home:
        if key_files:
            gpg.import_keys(home, key_files, program=program)
            # The named keyrings beside the imported keys.
            return verify(
                gpg.Keyring(home=home, keyrings=(home / "pubring.kbx", *extra) if extra else ())
            )
        # Only the named keyrings: an empty throwaway home keeps gpg from
        # creating or touching the user's own.
        return verify(gpg.Keyring(home=home, keyrings=extra))


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
