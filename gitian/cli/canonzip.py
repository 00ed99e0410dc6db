"""canon-zip: the host command for target-bin/canon-zip (SPEC §8)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gitian.canonzip import canon_zip
from gitian.cli import entry

CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"]}


@click.command(context_settings=CONTEXT)
@click.argument("date")
@click.argument("src", metavar="IN", type=click.Path(dir_okay=False))
@click.argument("dst", metavar="OUT", type=click.Path(dir_okay=False))
def cli(date: str, src: str, dst: str) -> None:
    """Copy the zip IN to OUT with every member's time set to DATE (YYYY-MM-DD) 00:00:00."""
    canon_zip(date, Path(src), Path(dst))


main = entry(cli, prog="canon-zip")
