"""gsign: turn a build result into a signed assert (SPEC §4).

``result/<name>-res.yml`` plus ``release``, ``name``, ``type: build`` and the
descriptor's ``optionals`` becomes ``<dest>/<release>/<signer>/<name>-build.assert``,
written byte-for-byte as the classic gsign writes it, and a binary detached
signature ``<assert>.sig`` next to it.

Nothing is half-written: the assert and its signature are made as temporary
files in the destination directory and renamed into place only once the
signature exists, so a failed signing leaves an earlier assert and signature
of the same signer exactly as they were.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gitian import log, values
from gitian.descriptor import Descriptor
from gitian.errors import DescriptorError, InputError, SignError, UsageError
from gitian.home import Home
from gitian.manifest import dump_assert, read_report
from gitian.run import require, run, signals_held
from gitian.text import printable


@dataclass(frozen=True)
class Signed:
    """Where gsign put the assert and its signature."""

    assert_path: Path
    sig_path: Path


def sanitary(value: str, option: str) -> str:
    """``value`` if it is safe as one path component, else a UsageError naming ``option``."""
    try:
        return values.sanitary(value, option)
    except DescriptorError as e:
        raise UsageError(e.message) from None


def assert_path(dest: Path, release: str, signer: str, name: str) -> Path:
    return dest / release / signer / f"{name}-build.assert"


def make_assert(home: Home, desc: Descriptor, release: str) -> bytes:
    """The assert bytes for ``desc``'s result file in ``home``."""
    result_file = home.result_file(desc.name)
    if not result_file.is_file():
        raise InputError(
            f"no build result at {printable(str(result_file))}",
            hint=f"run gbuild on the descriptor first (its name is {desc.name!r})",
        )
    report = read_report(result_file)
    return dump_assert(report, release, desc.name, desc.optionals)


def sign(
    home: Home,
    desc: Descriptor,
    *,
    signer: str,
    release: str = "test",
    destination: Path | None = None,
    program: str | None = None,
    gnupghome: str | None = None,
) -> Signed:
    """Write and sign the assert; see the module docstring for the guarantees."""
    sanitary(signer, "--signer")
    sanitary(release, "--release")
    if program is not None:
        try:
            argv_prefix = shlex.split(program)
        except ValueError as e:
            raise UsageError(f"--signing_program {program!r}: {e}") from None
        if not argv_prefix:
            raise UsageError("--signing_program is empty")
    else:
        argv_prefix = []
        require("gpg", why="to sign the assert")
    data = make_assert(home, desc, release)

    # The tree gsign writes into: sigs/<name> (sigs itself may be a link to a
    # sigs repository), or the directory -d names.
    top = destination if destination is not None else home.sigs
    dest = destination if destination is not None else home.sigs / desc.name
    final = assert_path(dest, release, signer, desc.name)
    final_sig = final.with_name(final.name + ".sig")
    refuse_symlinks(top, final.parent)
    try:
        with _new_dirs(final.parent), _temporaries(final) as (tmp, tmp_sig):
            _write_and_sign(data, tmp, tmp_sig, signer, argv_prefix if program else None, gnupghome)
            # Both files or neither: an interrupt between the two renames
            # would pair the new assert with the old signature.
            with signals_held():
                _replace_pair(tmp, tmp_sig, final, final_sig)
    except OSError as e:
        where = e.filename if isinstance(e.filename, str) else str(final.parent)
        raise SignError(f"cannot write {printable(where)}: {e.strerror or e}") from None
    log.debug(f"signed {final}")
    return Signed(final, final_sig)


def refuse_symlinks(top: Path, signer_dir: Path) -> None:
    """Refuse a symlink anywhere below ``top`` down to ``signer_dir``, or in
    it: gsign writes nothing outside the signature tree, and gverify would
    refuse such a signer anyway."""
    p = signer_dir
    while p != top and top in p.parents:
        if p.is_symlink():
            raise InputError(
                f"{printable(str(p))} is a symlink; gsign writes only into real directories",
                hint="replace the link by a directory (gverify refuses linked signers too)",
            )
        p = p.parent
    try:
        with os.scandir(signer_dir) as it:
            links = sorted(e.name for e in it if e.is_symlink())
    except (FileNotFoundError, NotADirectoryError):
        return
    if links:
        raise InputError(
            f"{printable(str(signer_dir / links[0]))} is a symlink; gsign writes only "
            "regular files into a signer's directory",
            hint="remove the link",
        )


def _replace_pair(tmp: Path, tmp_sig: Path, final: Path, final_sig: Path) -> None:
    """Rename the new assert and signature into place; if the second rename
    fails, put the previous assert back so the pair on disk still matches."""
    backup = final.with_name(f".{final.name}.old.{os.getpid()}")
    had_old = final.exists()
    if had_old:
        os.link(final, backup)
    try:
        try:
            os.replace(tmp, final)
            os.replace(tmp_sig, final_sig)
        except BaseException:
            if tmp_sig.exists():  # the new signature is not in place: the old assert goes back
                if had_old:
                    os.replace(backup, final)
                else:
                    final.unlink(missing_ok=True)
            raise
    finally:
        backup.unlink(missing_ok=True)


def _write_and_sign(
    data: bytes,
    tmp: Path,
    tmp_sig: Path,
    signer: str,
    program_argv: list[str] | None,
    gnupghome: str | None,
) -> None:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    env = {"GNUPGHOME": gnupghome} if gnupghome else None
    if program_argv is not None:
        _sign_with_program(program_argv, signer, tmp, env)
    else:
        _sign_with_gnupg(signer, tmp, tmp_sig, gnupghome)
    if not tmp_sig.is_file() or tmp_sig.stat().st_size == 0:
        raise SignError(
            f"signing produced no signature {printable(str(tmp_sig))}",
            hint="the signing program must write <file>.sig next to the file it signs",
        )
    _fsync(tmp_sig)


@contextmanager
def _new_dirs(path: Path) -> Iterator[None]:
    """``mkdir -p path``; on failure, remove again the (empty) directories it made."""
    made: list[Path] = []
    p = path
    while not p.exists():
        made.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for d in made:
            try:
                d.rmdir()
            except OSError:
                break
        raise


@contextmanager
def _temporaries(final: Path) -> Iterator[tuple[Path, Path]]:
    """A temporary assert name next to ``final`` and its ``.sig``; removed on failure."""
    tmp = final.with_name(f".{final.name}.tmp.{os.getpid()}")
    tmp_sig = tmp.with_name(tmp.name + ".sig")
    for p in (tmp, tmp_sig):
        p.unlink(missing_ok=True)
    try:
        yield tmp, tmp_sig
    finally:
        for p in (tmp, tmp_sig):
            p.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sign_with_program(
    prefix: list[str], signer: str, target: Path, env: Mapping[str, str] | None
) -> None:
    """``<program...> -u <signer> <assert>`` as the classic gsign runs it, minus the shell."""
    argv = [*prefix, "-u", signer, str(target)]
    result = run(argv, check=False, capture=True, env=env)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout or b"").decode("utf-8", "replace").strip()
        last = tail.splitlines()[-1] if tail else ""
        raise SignError(
            f"signing program failed with exit status {result.returncode}: {shlex.join(argv)}"
            + (f": {printable(last)}" if last else ""),
            hint="check that the signer's secret key is available to the signing program",
        )


def _tty() -> str | None:
    try:
        return os.ttyname(0) if os.isatty(0) else None
    except OSError:
        return None


def _sign_with_gnupg(signer: str, target: Path, sig: Path, gnupghome: str | None) -> None:
    """The default: ``gpg --detach-sign -u <signer>`` through python-gnupg, binary output."""
    import gnupg

    kwargs: dict[str, object] = {}
    if gnupghome:
        kwargs["gnupghome"] = gnupghome
    tty = _tty()
    if tty and "GPG_TTY" not in os.environ:
        # python-gnupg runs gpg with --no-tty; a passphrase prompt (pinentry)
        # still finds the user's terminal through GPG_TTY.
        kwargs["env"] = {**os.environ, "GPG_TTY": tty}
    try:
        gpg = gnupg.GPG(**kwargs)
    except (OSError, ValueError) as e:
        raise SignError(f"cannot start gpg: {printable(str(e))}") from None
    with open(target, "rb") as f:
        # --local-user, not python-gnupg's keyid (--default-key): an unknown
        # signer must fail, not silently fall back to another secret key.
        result = gpg.sign_file(
            f,
            detach=True,
            binary=True,
            clearsign=False,
            output=str(sig),
            extra_args=["--local-user", signer],
        )
    if not result or result.returncode not in (0, None):
        status = result.status or "no signature made"
        detail = getattr(result, "status_detail", None)
        stderr = (getattr(result, "stderr", "") or "").strip().splitlines()
        gpg_lines = [ln for ln in stderr if ln.startswith("gpg:")]
        why = gpg_lines[-1] if gpg_lines else ""
        msg = f"gpg could not sign as {signer!r}: {status}"
        if detail:
            msg += f" ({detail})"
        if why:
            msg += f"; {printable(why)}"
        raise SignError(
            msg,
            hint="list your secret keys with: gpg --list-secret-keys",
        )
