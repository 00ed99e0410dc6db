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
from gitian.text import printable
from gitian.verify import TrustedKeys, render_json, render_text, verify_release

CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"]}


@click.command(
    context_settings=CONTEXT,
    epilog="Exit status: 0 verified, 1 verification failed, 2 bad usage or input.",
)
@click.argument("descriptor", type=click.Path(dir_okay=False))
@click.option(
    "-v", "--verbose", is_flag=True, help="Be more verbose (gpg's full text, differences)."
)
@click.option(
    "-m",
    "--markup/--no-markup",
    default=True,
    help="Mark up verdicts with ANSI bold (default on).",
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
    "import_dirs",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Import the key files (.asc/.gpg/.pgp) in DIR into a temporary GNUPGHOME "
    "(repeatable).",
)
@click.option(
    "--trusted-keys",
    "trusted_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Bind signers to key fingerprints ('SIGNER KEYID FPR' or 'FPR NAME' lines).",
)
@click.option(
    "--min-ok",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Succeed when N signers with distinct keys are OK and none is MISMATCH.",
)
@click.option("--json", "as_json", is_flag=True, help="Write the whole report as JSON.")
@workdir_option
def cli(**params: Any) -> int:
    """Verify the signed asserts of every signer of a release, offline."""
    return run(**params)



def run(
    descriptor: str,
    verbose: bool,
    markup: bool,
    release: str,
    destination: str | None,
    compare_to: str | None,
    verify_program: str,
    keyrings: tuple[str, ...],
    import_dirs: tuple[str, ...],
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
    shown = os.path.join(destination, release)
    trusted = None
    if trusted_files:
        merged: dict[str, frozenset[str]] = {}
        for f in trusted_files:
            for k, v in TrustedKeys.load(f).bindings.items():
                merged[k] = merged.get(k, frozenset()) | v
        trusted = TrustedKeys(merged)
    for k in keyrings:
        if not os.path.isfile(k):
            raise UsageError(f"--keyring {k}: no such file")

    def verify(keyring: gpg.Keyring) -> int:
        report = verify_release(
            shown,
            name,
            release,
            keyring=keyring,
            program=program,
            compare_to=compare_to,
            trusted=trusted,
            min_ok=min_ok,
            display_dir=shown,
        )
        out = (
            render_json(report) if as_json else render_text(report, verbose=verbose, markup=markup)
        )
        _write_report(out)
        return report.exit_code

    if not keyrings and not import_dirs:
        keyring = gpg.Keyring()
        if not keyring.has_keys():
            raise UsageError(
                f"no public keys: {keyring.effective_home()} has no keyring",
                hint="name the signers' keys with --import-keys DIR, --keyring FILE or GNUPGHOME",
            )
        return verify(keyring)

    key_files = [f for d in import_dirs for f in gpg.key_files(Path(d))]
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
