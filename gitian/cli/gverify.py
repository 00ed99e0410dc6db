"""gverify: check every signer's assert and signature for one release (SPEC §5).

Exit status: 0 verified, 1 verification failed, 2 bad usage or input.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from gitian.errors import UsageError, VerifyError

# The console script imports only what a plain verification needs: no typing,
# pathlib, subprocess, Click or PyYAML (issue 2; see _run).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from gitian.verify import Prefetch

HELP = "Verify the signed asserts of every signer of a release, offline."
EPILOG = "Exit status: 0 verified, 1 verification failed, 2 bad usage or input."


def _click_command() -> Any:
    """The Click command (help, usage errors and every unusual command line)."""
    import click  # noqa: PLC0415

    from gitian.cli import workdir_option  # noqa: PLC0415

    @click.command(
        help=HELP,
        context_settings={"help_option_names": ["-h", "--help"]},
        epilog=EPILOG,
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
        return run(**params)

    return cli


def __getattr__(name: str) -> Any:
    # ``cli``, the Click command, is built on first use: the console script
    # only needs it for help, usage errors and unusual command lines.
    if name == "cli":
        cmd = _click_command()
        globals()["cli"] = cmd
        return cmd
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------
# the lean command line
#
# Importing Click costs more than a third of what gverify's whole run should
# (issue 2).  So the console script parses the ordinary command lines itself,
# and hands everything else - help, any error, any spelling it does not take
# exactly as Click would (bundled short options, -rVALUE, a value starting
# with '-', a repeated single option, ...) - to the Click command above,
# which then behaves as it always did.

#: Options taking a value: spelling -> (parameter, repeatable).
_VALUE_OPTIONS: dict[str, tuple[str, bool]] = {
    "-r": ("release", False),
    "--release": ("release", False),
    "-d": ("destination", False),
    "--destination": ("destination", False),
    "-c": ("compare_to", False),
    "--compare-to": ("compare_to", False),
    "-p": ("verify_program", False),
    "--verify-program": ("verify_program", False),
    "--keyring": ("keyrings", True),
    "--import-keys": ("import_dirs", True),
    "--trusted-keys": ("trusted_files", True),
    "--min-ok": ("min_ok", False),
    "--workdir": ("workdir", False),
}
#: Flags: spelling -> (parameter, value).
_FLAGS: dict[str, tuple[str, bool]] = {
    "-v": ("verbose", True),
    "--verbose": ("verbose", True),
    "-m": ("markup", True),
    "--markup": ("markup", True),
    "--no-markup": ("markup", False),
    "--json": ("as_json", True),
}
#: click.Path checks: (parameter, directories allowed, files allowed).
_PATHS = (
    ("descriptor", False, True),
    ("keyrings", False, True),
    ("import_dirs", True, False),
    ("trusted_files", False, True),
    ("workdir", True, False),
)


def _path_ok(value: str, dir_okay: bool, file_okay: bool) -> bool:
    """Whether click.Path (exists=False) takes ``value`` without complaint."""
    import stat  # noqa: PLC0415

    try:
        st = os.stat(value)
    except OSError:
        return True
    except ValueError:  # a NUL byte: let Click deal with it
        return False
    if not file_okay and stat.S_ISREG(st.st_mode):
        return False
    if not dir_okay and stat.S_ISDIR(st.st_mode):
        return False
    return os.access(value, os.R_OK)


def parse_args(argv: list[str]) -> dict[str, Any] | None:
    """``run``'s parameters from an ordinary command line, or None for Click to handle."""
    params: dict[str, Any] = {
        "verbose": False,
        "markup": True,
        "release": "current",
        "destination": None,
        "compare_to": None,
        "verify_program": "gpg",
        "keyrings": [],
        "import_dirs": [],
        "trusted_files": [],
        "min_ok": None,
        "as_json": False,
        "workdir": None,
    }
    seen: set[str] = set()
    positional: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            positional.extend(argv[i:])
            break
        if arg[:1] != "-" or arg == "-":
            positional.append(arg)
            continue
        opt, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if opt in _FLAGS and not eq:
            dest, const = _FLAGS[opt]
            if dest in seen:
                return None
            seen.add(dest)
            params[dest] = const
            continue
        if opt not in _VALUE_OPTIONS:
            return None  # help, a bundle, -rVALUE, a typo: Click says what it does
        dest, repeatable = _VALUE_OPTIONS[opt]
        if not eq:
            if i >= len(argv):
                return None
            value = argv[i]
            i += 1
            if value[:1] == "-":
                return None
        if repeatable:
            params[dest].append(value)
            continue
        if dest in seen:
            return None
        seen.add(dest)
        params[dest] = value
    if len(positional) != 1:
        return None
    params["descriptor"] = positional[0]
    min_ok = params["min_ok"]
    if min_ok is not None:
        if not (min_ok.isascii() and min_ok.isdigit()) or int(min_ok) < 1:
            return None
        params["min_ok"] = int(min_ok)
    for dest, dir_okay, file_okay in _PATHS:
        value = params[dest]
        for v in value if isinstance(value, list) else [value]:
            if v is not None and not _path_ok(v, dir_okay, file_okay):
                return None
    for dest in ("keyrings", "import_dirs", "trusted_files"):
        params[dest] = tuple(params[dest])
    return params


def main(argv: list[str] | None = None) -> NoReturn:
    """The console script: the lean parser, else the Click command."""
    args = sys.argv[1:] if argv is None else argv
    params = None if "_GVERIFY_COMPLETE" in os.environ else parse_args(list(args))
    if params is None:
        from gitian.cli import entry  # noqa: PLC0415

        click_main: Callable[[list[str] | None], NoReturn] = entry(__getattr__("cli"), "gverify")
        click_main(argv)
    if argv is not None:  # called from Python (tests): exit the ordinary way
        _guarded(params)
    try:
        _guarded(params)
    except SystemExit as e:
        _exit_now(e)
        raise


def _exit_now(e: SystemExit) -> None:
    """End the console script without the interpreter's teardown.

    Freeing every module and object at exit costs gverify about a quarter of
    its whole budget (issue 2), and there is nothing left to do by then:
    every file, temporary directory and gpg process has been closed, removed
    or reaped by its context manager, no thread is running and no ``atexit``
    handler of ours is registered.  So the output is flushed and the process
    exits with the same status.  If flushing fails (a closed pipe), this
    returns and the exit takes its ordinary course.
    """
    code = e.code
    if code is None:
        code = 0
    if not isinstance(code, int):
        return
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        return
    os._exit(code)


def _guarded(params: dict[str, Any]) -> NoReturn:
    """Run with the error handling of :func:`gitian.cli.entry`."""
    import signal  # noqa: PLC0415

    from gitian import log  # noqa: PLC0415
    from gitian.cli import _on_sigterm, fail  # noqa: PLC0415
    from gitian.errors import GitianError, Interrupted  # noqa: PLC0415

    name = "gverify"
    if os.environ.get("GITIAN_DEBUG"):
        log.set_debug(True)
    old = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        rv = run(**params)
    except Interrupted as e:
        _echo_err(f"{name}: {e.message}; everything started was stopped")
        sys.exit(143 if "SIGTERM" in e.message else 130)
    except KeyboardInterrupt:
        _echo_err(f"{name}: interrupted; everything started was stopped")
        sys.exit(130)
    except GitianError as e:
        fail(name, e)
    except BrokenPipeError:
        sys.exit(1)
    finally:
        signal.signal(signal.SIGTERM, old)
    sys.exit(rv)


def _echo_err(message: str) -> None:
    import click  # noqa: PLC0415 - the rare path; the same output as entry()

    click.echo(message, err=True)


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
    # gpg's work is started first, before the YAML library is even loaded,
    # when the command line alone says where it is (see _start_early).
    early = _start_early(release, destination, verify_program, keyrings, import_dirs)
    try:
        return _run(
            descriptor,
            verbose,
            markup,
            release,
            destination,
            compare_to,
            verify_program,
            keyrings,
            import_dirs,
            trusted_files,
            min_ok,
            as_json,
            workdir,
            early,
        )
    finally:
        if early is not None:
            early.close()


def _guess_package(release_dir: str) -> str | None:
    """The package name the signers' files carry (``<name>-build.assert.sig``),
    if the first signer directories agree on one."""
    suffix = "-build.assert.sig"
    found: set[str] = set()
    looked = 0
    try:
        with os.scandir(release_dir) as signers:
            for signer in signers:
                if looked >= 3 or not signer.is_dir(follow_symlinks=False):
                    continue
                looked += 1
                with os.scandir(signer.path) as files:
                    found.update(
                        f.name[: -len(suffix)]
                        for f in files
                        if f.name.endswith(suffix) and len(f.name) > len(suffix)
                    )
    except OSError:
        return None
    return found.pop() if len(found) == 1 else None


def _start_early(
    release: str,
    destination: str | None,
    verify_program: str,
    keyrings: tuple[str, ...],
    import_dirs: tuple[str, ...],
) -> Prefetch | None:
    """Start reading the signers' files and checking their signatures now, if
    the command line says where they are and GNUPGHOME is ready (issue 2).

    The package name is guessed from the files; :func:`gitian.verify.
    verify_release` uses this work only if the descriptor, once loaded and
    checked, names that package and every other check passes - otherwise
    everything happens as it would have without it.  Never with --keyring or
    --import-keys (they need a home of their own first), a home whose trust
    database gpg would still have to create, or debug output.
    """
    from gitian import log  # noqa: PLC0415

    if destination is None or keyrings or import_dirs or log.state.debug:
        return None
    if not release or "/" in release or "\0" in release or release in (".", ".."):
        return None
    try:
        program = split_program(verify_program)
    except ValueError:
        return None
    shown = os.path.join(destination, release)
    package = _guess_package(shown) if program else None
    if package is None:
        return None
    from gitian import gpg  # noqa: PLC0415
    from gitian.verify import Prefetch  # noqa: PLC0415

    keyring = gpg.Keyring()
    if not keyring.has_keys() or keyring.needs_warmup():
        return None
    # One gpg process checks the whole release (≈12 ms) on one core while the
    # interpreter goes on on the other; two were no faster (bench/gverify.py).
    return Prefetch(shown, package, keyring=keyring, program=program, display_dir=shown, workers=1)


def _run(
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
    early: Prefetch | None,
) -> int:
    from gitian import gpg  # noqa: PLC0415
    from gitian.descriptor import SANITARY, load_name  # noqa: PLC0415
    from gitian.text import printable  # noqa: PLC0415
    from gitian.verify import (  # noqa: PLC0415
        TrustedKeys,
        render_json,
        render_text,
    )

    if sys.stdout is None:
        raise VerifyError("standard output is closed: nowhere to write the report")
    name = load_name(descriptor)
    if not SANITARY.fullmatch(release) or release in (".", ".."):
        raise UsageError(f"--release {printable(release)!r} is not sanitary")
    if compare_to is not None and (
        "/" in compare_to or compare_to in ("", ".", "..") or "\0" in compare_to
    ):
        raise UsageError(f"--compare-to {printable(compare_to)!r} is not a signer name")
    try:
        program = split_program(verify_program)
    except ValueError as e:
        raise UsageError(f"--verify-program {printable(verify_program)!r}: {e}") from None
    if not program:
        raise UsageError("--verify-program is empty")
    if destination is None:
        from gitian.home import Home  # noqa: PLC0415

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
        from gitian.verify import verify_release  # noqa: PLC0415

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
            prefetched=early,
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

    from pathlib import Path  # noqa: PLC0415

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


def split_program(value: str) -> list[str]:
    """``value`` split into words as a POSIX shell would (:func:`shlex.split`),
    without loading :mod:`shlex` for the usual plain words."""
    if all(c.isascii() and (c.isalnum() or c in " -_./+=:,@%") for c in value):
        return value.split()
    import shlex  # noqa: PLC0415

    return shlex.split(value)


if __name__ == "__main__":
    main()
