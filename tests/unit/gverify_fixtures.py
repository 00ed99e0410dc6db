"""Shared helpers for the gverify tests (unit and adversarial).

Real gpg, real keys: the compat keys are imported into a throwaway
GNUPGHOME once per session, and two throwaway ed25519 keys (Mallory and
Trent) are made for re-signing.  The gpg-agent that key generation and
signing need is started in the throwaway home only, and stopped by
``gpgconf --homedir`` at the end of the session.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from testdata import COMPAT, DATA

from gitian import gpgkeys

ROOT = Path(__file__).resolve().parents[2]

#: (package name, release, descriptor file, key set, expected output file)
RELEASES = {
    "monero-linux": (
        "monero-linux-0.18",
        "v0.18.3.1-linux",
        "v0.18.3.1-gitian-linux.yml",
        "monero",
    ),
    "monero-win": ("monero-win-0.18", "v0.18.3.4-win", "v0.18.3.4-gitian-win.yml", "monero"),
    "monero-osx": ("monero-osx-0.18", "v0.18.4.0-osx", "v0.18.4.0-gitian-osx.yml", "monero"),
    "bitcoin": (
        "bitcoin-core-linux-0.21",
        "0.21.2-linux",
        "bitcoin-core-linux-0.21-for-gverify.yml",
        "bitcoin",
    ),
}

#: Whole trees (compressed), Guix releases, the asserts of issue 13's explanation.
TREES = DATA / "trees"
GUIX = DATA / "guix"
EXPLAIN = DATA / "explain"
#: Bitcoin Core 0.21.2, every platform: release directory -> descriptor name.
BITCOIN_0212 = {
    "0.21.2-linux": "bitcoin-core-linux-0.21",
    "0.21.2-win-unsigned": "bitcoin-core-win-0.21",
    "0.21.2-osx-unsigned": "bitcoin-core-osx-0.21",
    "0.21.2-win-signed": "bitcoin-win-signer",
    "0.21.2-osx-signed": "bitcoin-dmg-signer",
}

GPG_BASE = ["gpg", "--batch", "--no-tty", "--disable-dirmngr", "--no-auto-key-retrieve"]


@dataclass(frozen=True)
class Keys:
    """The key material of a test session."""

    home: Path  # public keys: every compat key plus Mallory's and Trent's
    signer_home: Path  # Mallory's and Trent's secret keys
    mallory: str  # fingerprints
    trent: str

    def sign(self, path: Path, who: str, *, out: Path | None = None) -> Path:
        """Make a binary detached signature of ``path`` by ``who``'s key."""
        sig = out or path.with_name(path.name + ".sig")
        sig.unlink(missing_ok=True)
        gpg_in(self.signer_home, "--local-user", who, "--detach-sign", "-o", str(sig), str(path))
        return sig


def gpg_in(home: Path, *args: str, stdin: bytes | None = None) -> bytes:
    """Run gpg in ``home`` (keys without a passphrase); its standard output."""
    argv = [*GPG_BASE, "--homedir", str(home), "--pinentry-mode", "loopback", "--passphrase", ""]
    return subprocess.run([*argv, *args], check=True, capture_output=True, input=stdin).stdout


def gen_key(home: Path, uid: str) -> str:
    """A new ed25519 signing key in ``home``; its fingerprint."""
    gpg_in(home, "--quick-gen-key", uid, "ed25519", "sign", "never")
    out = gpg_in(home, "--with-colons", "--list-keys", uid).decode()
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


def revocation(home: Path, who: str, comment: str) -> bytes:
    """A revocation certificate for ``who``'s key ("key compromised", ``comment``)."""
    return subprocess.run(
        [
            "gpg",
            "--no-tty",
            "--homedir",
            str(home),
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--command-fd",
            "0",
            "--output",
            "-",
            "--generate-revocation",
            who,
        ],
        input=f"y\n1\n{comment}\n\ny\n".encode(),
        check=True,
        capture_output=True,
    ).stdout


_MADE: list[Keys] = []


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    """The session's keys.  Several test modules import this fixture, and pytest
    then holds one definition per module; the keys are made only once."""
    if _MADE:
        yield _MADE[0]
        return
    if shutil.which("gpg") is None:
        if os.environ.get("CI") or os.environ.get("GITIAN_STRICT_SKIPS"):
            pytest.fail("gpg missing (skips are failures in CI)")
        pytest.skip("gpg missing")
    base = tmp_path_factory.mktemp("gverify-keys")
    home = base / "public"
    signer = base / "secret"
    for d in (home, signer):
        d.mkdir(mode=0o700)
    try:
        mallory = gen_key(signer, "Mallory <mallory@example.org>")
        trent = gen_key(signer, "Trent <trent@example.org>")
        pub = base / "throwaway.asc"
        with open(pub, "wb") as f:
            subprocess.run(
                [*GPG_BASE, "--homedir", str(signer), "--export", "--armor"],
                check=True,
                stdout=f,
            )
        files = sorted((COMPAT / "keys" / "monero").glob("*.asc"))
        files += sorted(
            p
            for p in (COMPAT / "keys" / "bitcoin").iterdir()
            if p.suffix in (".gpg", ".pgp", ".asc")
        )
        gpgkeys.import_keys(home, [*files, pub])
        _MADE.append(Keys(home=home, signer_home=signer, mallory=mallory, trent=trent))
        yield _MADE[0]
    finally:
        _MADE.clear()
        # Stop the agent that key generation started in our own home (by home).
        subprocess.run(
            ["gpgconf", "--homedir", str(signer), "--kill", "gpg-agent"],
            check=False,
            capture_output=True,
        )


def copy_release(key: str, dest: Path) -> tuple[Path, Path, str, str]:
    """A writable copy of a compat release tree.

    Returns (sigs dir for -d, release dir, package name, release).
    """
    package, release, _, _ = RELEASES[key]
    src = COMPAT / "sigs" / package / release
    sigs = dest / "sigs" / package
    rel = sigs / release
    shutil.copytree(src, rel, copy_function=shutil.copyfile)
    for dirpath, dirnames, _files in os.walk(dest):
        for name in dirnames:
            p = os.path.join(dirpath, name)
            os.chmod(p, os.stat(p).st_mode | stat.S_IWUSR | stat.S_IRUSR | stat.S_IXUSR)
        os.chmod(dirpath, os.stat(dirpath).st_mode | stat.S_IWUSR)
    return sigs, rel, package, release


def descriptor(key: str) -> Path:
    return COMPAT / "descriptors" / RELEASES[key][2]


def expected_output(key: str) -> bytes:
    package, release, _, _ = RELEASES[key]
    return (COMPAT / "expected" / f"gverify-{package}-{release}.out").read_bytes()


@dataclass
class Run:
    code: int
    out: str
    err: str


def run_gverify(
    args: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    home: Path | None = None,
) -> Run:
    """Run gverify's console entry in-process; exit code, stdout, stderr."""
    from gitian.cli.gverify import main

    if home is not None:
        monkeypatch.setenv("GNUPGHOME", str(home))
    capsys.readouterr()
    try:
        main(args)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    else:  # pragma: no cover - main always exits
        code = 0
    sys.stdout.flush()
    cap = capsys.readouterr()
    return Run(code, cap.out, cap.err)


def release_args(key: str, sigs: Path | None = None) -> list[str]:
    package, release, desc, _ = RELEASES[key]
    d = sigs if sigs is not None else COMPAT / "sigs" / package
    return ["-d", str(d), "-r", release, str(COMPAT / "descriptors" / desc)]


def verdict_lines(out: str) -> list[str]:
    """The verdict lines of a --no-markup report, in order."""
    verdict = re.compile(
        r".*: (OK(, signed by .+)?|MISMATCH|BAD SIGNATURE|WRONG KEY|BAD ASSERT|REFUSED)"
    )
    return [
        line
        for line in out.splitlines()
        if verdict.fullmatch(line)
        and not line.startswith("gverify: ")
        or line.startswith(("missing result at", "missing signature at"))
    ]


def extract(archive: str, dest: Path) -> Path:
    """A tree from tests/data/trees, extracted into ``dest``."""
    import tarfile

    with tarfile.open(TREES / archive) as t:
        t.extractall(dest, filter="data")
    return dest


def name_only(directory: Path, names: list[str]) -> list[str]:
    """One descriptor holding only ``name:`` per name (all gverify reads); their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in names:
        (directory / f"{n}.yml").write_text(f"---\nname: {n}\n")
        paths.append(str(directory / f"{n}.yml"))
    return paths


def builder_keys(dest: Path, signers: list[str]) -> Path:
    """A guix.sigs-style keys directory (``<signer>.gpg``) for ``signers``, from
    the compat keys (byte-identical to bitcoin-core/guix.sigs builder-keys/)."""
    dest.mkdir(parents=True, exist_ok=True)
    for s in signers:
        src = COMPAT / "keys" / "bitcoin" / f"{s}.gpg"
        if src.is_file():
            shutil.copyfile(src, dest / src.name)
    return dest


def console(args: list[str], env: dict[str, str], *, terminal: str = "") -> tuple[int, bytes]:
    """Run the gverify console entry with ``terminal`` ("stdout" or "stderr")
    on a pseudo-terminal: its exit status and what it wrote there (read as it
    comes, so a chatty child never blocks on a full terminal)."""
    import pty
    import select

    primary, secondary = pty.openpty()
    streams = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, terminal: secondary}
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from gitian.cli.gverify import main; main()", *args],
            env=env,
            stdout=streams["stdout"],
            stderr=streams["stderr"],
        )
        os.close(secondary)
        seen = b""
        while True:
            ready, _, _ = select.select([primary], [], [], 120)
            if not ready:
                proc.kill()
                break
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            seen += chunk
        return proc.wait(timeout=120), seen
    finally:
        os.close(primary)
