"""gsign: sign the build result of a descriptor (SPEC §4)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from gitian import log
from gitian.cli import entry, workdir_option
from gitian.descriptor import load
from gitian.home import Home
from gitian.sign import sanitary, sign
from gitian.text import printable

CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"]}


@click.command(context_settings=CONTEXT)
@click.argument("descriptor", type=click.Path(dir_okay=False))
@click.option("-q", "--quiet", is_flag=True, help="Be quiet.")
@click.option(
    "-s", "--signer", required=True, help="Signer: the gpg key (-u) and the sigs/ directory."
)
@click.option("-r", "--release", default="test", show_default=True, help="Release name.")
@click.option(
    "-d",
    "--destination",
    default=None,
    type=click.Path(file_okay=False),
    help="Signature tree (default: <home>/sigs/<name>).",
)
@click.option(
    "-p",
    "--signing_program",
    "--signing-program",
    "signing_program",
    default=None,
    metavar="PROGRAM",
    help="Sign by running PROGRAM -u SIGNER ASSERT (split like a shell would, never run "
    "through one); it must write ASSERT.sig.  Default: gpg --detach-sign via python-gnupg.",
)
@click.option(
    "--gnupghome",
    default=None,
    type=click.Path(file_okay=False),
    help="GnuPG home holding the secret key (default: $GNUPGHOME, else ~/.gnupg).",
)
@workdir_option
def cli(
    descriptor: str,
    quiet: bool,
    signer: str,
    release: str,
    destination: str | None,
    signing_program: str | None,
    gnupghome: str | None,
    workdir: str | None,
) -> None:
    """Write result/<name>-res.yml as a signed assert in sigs/<name>/<release>/<signer>/."""
    log.set_quiet(quiet)
    # Refuse unsafe path components before reading or writing anything.
    sanitary(signer, "--signer")
    sanitary(release, "--release")
    home = Home.find(workdir)
    desc = load(descriptor)
    signed = sign(
        home,
        desc,
        signer=signer,
        release=release,
        destination=Path(destination) if destination else None,
        program=signing_program,
        gnupghome=gnupghome or os.environ.get("GNUPGHOME") or None,
    )
    if not quiet:
        click.echo(printable(str(signed.assert_path)))


main = entry(cli, prog="gsign")
