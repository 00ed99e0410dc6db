"""Command-line entry points.  This package is the only place that turns
errors into exit codes and messages.

Each tool lives in its own module with a thin Click command calling into the
library; its console-script entry is ``main = entry(command)``.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

import click

from gitian import log
from gitian.errors import CommandError, GitianError, Interrupted
from gitian.text import printable


def _on_sigterm(signum: int, frame: FrameType | None) -> NoReturn:
    # Unwind through every context manager, exactly like Ctrl-C does.
    raise Interrupted("terminated by SIGTERM", hint=None)


def fail(prog: str, err: GitianError) -> NoReturn:
    """Print an expected failure in the house format and exit with its code."""
    _echo(f"{prog}: error: ", err.message)
    if isinstance(err, CommandError) and err.output:
        for line in err.output.rstrip().split("\n")[-15:]:
            click.echo(f"    {printable(line)}", err=True)
    if err.hint:
        _echo(f"{prog}: hint: ", err.hint)
    sys.exit(err.exit_code)


def _echo(label: str, text: str) -> None:
    """``text`` after ``label``; more lines (a log's tail) each on a line of
    its own, indented, so none can pass for a line of ours."""
    first, *rest = text.split("\n")
    click.echo(label + printable(first), err=True)
    for line in rest:
        click.echo("  " + printable(line), err=True)


def entry(command: click.Command, prog: str | None = None) -> Callable[..., NoReturn]:
    """Wrap a Click command into a console-script ``main``."""

    def main(argv: list[str] | None = None) -> NoReturn:
        name = prog or os.path.basename(sys.argv[0]) or command.name or "gitian"
        if os.environ.get("GITIAN_DEBUG"):
            log.set_debug(True)
        old = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            rv: Any = command.main(args=argv, prog_name=name, standalone_mode=False)
        except click.exceptions.Abort:
            # Click turns Ctrl-C into Abort once every context manager has run.
            click.echo(f"{name}: interrupted; everything started was stopped", err=True)
            sys.exit(130)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except Interrupted as e:
            click.echo(f"{name}: {e.message}; everything started was stopped", err=True)
            sys.exit(143 if "SIGTERM" in e.message else 130)
        except KeyboardInterrupt:
            click.echo(f"{name}: interrupted; everything started was stopped", err=True)
            sys.exit(130)
        except GitianError as e:
            fail(name, e)
        except BrokenPipeError:
            sys.exit(1)
        finally:
            signal.signal(signal.SIGTERM, old)
        sys.exit(rv if isinstance(rv, int) else 0)

    return main


def workdir_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--workdir",
        type=click.Path(file_okay=False),
        default=None,
        help="Gitian home (default: $GITIAN_BASE, else the current directory).",
    )(f)


def backend_option(f: Callable[..., Any]) -> Callable[..., Any]:
    from gitian.targets import BACKENDS

    return click.option(
        "--backend",
        type=click.Choice(list(BACKENDS)),
        default=None,
        help="Target backend (default: USE_LXC / USE_DOCKER / USE_VBOX / USE_BWRAP, else kvm).",
    )(f)
