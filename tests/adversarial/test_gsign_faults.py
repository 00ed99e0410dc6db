"""gsign under faults (issue 6, item 3): gpg fails, is killed, the user
interrupts, the disk is full.

Each case starts from a signer directory holding a good assert and its
signature (made by real gpg), changes the result, then makes the new signing
fail.  Afterwards: a clear one-line error and a nonzero exit, the previous
assert and ``.sig`` byte-identical (and still a valid pair), no temporary
file left in the signer directory, no directory left behind for a new
signer, and no process the signing started still running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from testdata import COMPAT

from tests.conftest import pid_gone, wait_until

GPG = ["gpg", "--batch", "--no-tty", "--disable-dirmngr", "--no-auto-key-retrieve"]
NAME = "pkg"
RELEASE = "v1"


def _need(*tools: str) -> None:
    import shutil

    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        msg = f"missing host tools: {', '.join(missing)}"
        if os.environ.get("CI") or os.environ.get("GITIAN_STRICT_SKIPS"):
            pytest.fail(msg + " (skips are failures in CI)")
        pytest.skip(msg)


@pytest.fixture(scope="module")
def gpg_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(GNUPGHOME, fingerprint) of a throwaway passphrase-less ed25519 key."""
    _need("gpg", "gpgconf")
    home = tmp_path_factory.mktemp("gpg")
    home.chmod(0o700)
    try:
        subprocess.run(
            [*GPG, "--homedir", str(home), "--pinentry-mode", "loopback", "--passphrase", "",
             "--quick-gen-key", "Fault Test <fault@example.invalid>", "ed25519", "sign", "never"],
            check=True,
            capture_output=True,
        )
        out = subprocess.run(
            [*GPG, "--homedir", str(home), "--with-colons", "--list-secret-keys"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        fpr = next(ln.split(":")[9] for ln in out.splitlines() if ln.startswith("fpr:"))
        yield str(home), fpr
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
            check=False,
            capture_output=True,
        )


@dataclass
class Signed:
    home: Path
    desc: Path
    gnupghome: str
    fpr: str
    assert_path: Path
    sig_path: Path
    before: tuple[bytes, bytes]

    def args(
        self, *extra: str, signer: str | None = None, gnupghome: str | None = None
    ) -> list[str]:
        return [
            "--workdir", str(self.home), "-s", signer or self.fpr, "-r", RELEASE,
            "--gnupghome", gnupghome or self.gnupghome, *extra, str(self.desc),
        ]

    def unchanged(self) -> None:
        now = (self.assert_path.read_bytes(), self.sig_path.read_bytes())
        assert now == self.before, "the previous assert or signature changed"
        listing = sorted(p.name for p in self.assert_path.parent.iterdir())
        assert listing == sorted([self.assert_path.name, self.sig_path.name]), listing
        v = subprocess.run(
            [*GPG, "--homedir", self.gnupghome, "--verify", str(self.sig_path),
             str(self.assert_path)],
            capture_output=True,
        )
        assert v.returncode == 0, v.stderr


def gsign(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from gitian.cli.gsign import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    errs = [ln for ln in r.stderr.splitlines() if ln.startswith("gsign: error:")]
    assert len(errs) == 1, r.stderr
    assert errs[0].isprintable()
    assert "Traceback" not in r.stderr, r.stderr
    return errs[0]


@pytest.fixture
def signed(tmp_path: Path, gpg_key: tuple[str, str]) -> Signed:
    """A home whose signer directory holds a good assert and signature; the
    result file has since changed, so a new signing would change both."""
    gnupghome, fpr = gpg_key
    home = tmp_path / "home"
    (home / "result").mkdir(parents=True)
    res = home / "result" / f"{NAME}-res.yml"
    res.write_bytes((COMPAT / "yaml" / "ex1-gbuild-res.yml").read_bytes())
    desc = tmp_path / f"{NAME}.yml"
    desc.write_text(
        f"name: {NAME}\ndistro: debian\nsuites: [bookworm]\narchitectures: [amd64]\n"
        "reference_datetime: '2021-01-01 00:00:00'\n"
    )
    s = Signed(home, desc, gnupghome, fpr, Path(), Path(), (b"", b""))
    r = gsign(s.args())
    assert r.returncode == 0, r.stderr
    s.assert_path = home / "sigs" / NAME / RELEASE / fpr / f"{NAME}-build.assert"
    s.sig_path = s.assert_path.with_name(s.assert_path.name + ".sig")
    s.before = (s.assert_path.read_bytes(), s.sig_path.read_bytes())
    res.write_bytes((COMPAT / "yaml" / "ex2-gbuild-res-signer.yml").read_bytes())
    return s


def _program(tmp_path: Path, body: str) -> str:
    p = tmp_path / "signprog"
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return str(p)


def test_program_exits_1(signed: Signed, tmp_path: Path) -> None:
    prog = _program(tmp_path, 'for last; do :; done\nprintf partial > "$last.sig"\nexit 1\n')
    r = gsign(signed.args("-p", prog))
    assert r.returncode == 1
    _one_error_line(r)
    signed.unchanged()


def test_program_killed_mid_way(signed: Signed, tmp_path: Path) -> None:
    prog = _program(tmp_path, 'for last; do :; done\nprintf half > "$last.sig"\nkill -9 $$\n')
    r = gsign(signed.args("-p", prog))
    assert r.returncode == 1
    _one_error_line(r)
    signed.unchanged()


def test_program_succeeds_without_signature(signed: Signed) -> None:
    r = gsign(signed.args("-p", "true"))
    assert r.returncode == 1
    assert "no signature" in _one_error_line(r)
    signed.unchanged()


def test_program_writes_empty_signature(signed: Signed, tmp_path: Path) -> None:
    prog = _program(tmp_path, 'for last; do :; done\n: > "$last.sig"\n')
    r = gsign(signed.args("-p", prog))
    assert r.returncode == 1
    _one_error_line(r)
    signed.unchanged()


def test_missing_key(signed: Signed) -> None:
    r = gsign(signed.args(signer="0000000000000000000000000000000000000000"))
    assert r.returncode == 1
    _one_error_line(r)
    signed.unchanged()
    assert not (signed.home / "sigs" / NAME / RELEASE / ("0" * 40)).exists()


def test_gnupghome_missing(signed: Signed, tmp_path: Path) -> None:
    r = gsign(signed.args(gnupghome=str(tmp_path / "no-such-gnupghome")))
    assert r.returncode != 0
    _one_error_line(r)
    signed.unchanged()


def test_signer_of_another_key_cannot_reuse_the_directory(signed: Signed) -> None:
    """Signing as an unknown signer never touches an existing signer's files."""
    r = gsign(signed.args(signer="mallory"))
    assert r.returncode == 1
    signed.unchanged()
    assert not (signed.home / "sigs" / NAME / RELEASE / "mallory").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_while_signing(signed: Signed, tmp_path: Path, sig: signal.Signals) -> None:
    """The user interrupts gsign while the signing program runs: it stops the
    program, removes its temporaries and leaves the old pair."""
    pidfile = tmp_path / "prog.pid"
    prog = _program(
        tmp_path,
        f'echo $$ > {pidfile}\nfor last; do :; done\nprintf half > "$last.sig"\nexec sleep 60\n',
    )
    p = subprocess.Popen(
        [sys.executable, "-c", "from gitian.cli.gsign import main; main()",
         *signed.args("-p", prog)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    def sleeping() -> int:
        """The signing program's pid once it has written half a signature and
        sleeps (exec keeps the pid), else 0."""
        assert p.poll() is None, p.communicate()
        text = pidfile.read_text().strip() if pidfile.exists() else ""
        if not text.isdigit():
            return 0
        try:
            cmd = Path(f"/proc/{text}/cmdline").read_bytes()
        except OSError:
            return 0
        return int(text) if cmd.startswith(b"sleep\0") else 0

    try:
        child = wait_until(sleeping, timeout=30, what="the signing program to start")
        p.send_signal(sig)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode in (130, 143), err
    assert "Traceback" not in err, err
    signed.unchanged()
    try:
        wait_until(lambda: pid_gone(child), timeout=10, what="the signing program to end")
    finally:
        if not pid_gone(child):
            os.kill(child, signal.SIGKILL)  # left running: the test has failed


def test_interrupt_between_the_two_renames_keeps_a_valid_pair(
    signed: Signed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal that lands after the assert is renamed into place but before
    its signature is must not leave a new assert beside the old signature."""
    from gitian import sign as sign_mod
    from gitian.descriptor import load
    from gitian.home import Home

    real_replace = os.replace
    calls: list[str] = []

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        real_replace(src, dst)
        calls.append(os.fspath(dst))
        if len(calls) == 1:
            raise KeyboardInterrupt  # Ctrl-C right after the first rename

    # sign.py calls os.replace; patch it where the module looks it up
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        sign_mod.sign(
            Home(signed.home),
            load(signed.desc),
            signer=signed.fpr,
            release=RELEASE,
            gnupghome=signed.gnupghome,
        )
    monkeypatch.undo()
    v = subprocess.run(
        [*GPG, "--homedir", signed.gnupghome, "--verify", str(signed.sig_path),
         str(signed.assert_path)],
        capture_output=True,
    )
    assert v.returncode == 0, "assert and signature no longer match: " + v.stderr.decode()


def _mount_tmpfs(where: Path, size: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)


def _umount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def test_disk_full_while_writing_the_assert(signed: Signed, tmp_path: Path) -> None:
    """The destination fills up: one clear error, the old pair stays."""
    if os.geteuid() != 0:
        if os.environ.get("CI") or os.environ.get("GITIAN_STRICT_SKIPS"):
            pytest.fail("needs root (skips are failures in CI)")
        pytest.skip("needs root")
    _need("mount", "umount")
    dest = tmp_path / "fulldest"
    dest.mkdir()
    _mount_tmpfs(dest, "64k")
    try:
        old = dest / RELEASE / signed.fpr
        old.mkdir(parents=True)
        (old / signed.assert_path.name).write_bytes(signed.before[0])
        (old / signed.sig_path.name).write_bytes(signed.before[1])
        # fill the file system to the last block
        with open(dest / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
            except OSError:
                pass
        r = gsign(signed.args("-d", str(dest)))
        assert r.returncode != 0
        # the files first, so a failure below is only about the message
        assert (old / signed.assert_path.name).read_bytes() == signed.before[0]
        assert (old / signed.sig_path.name).read_bytes() == signed.before[1]
        assert sorted(p.name for p in old.iterdir()) == sorted(
            [signed.assert_path.name, signed.sig_path.name]
        )
        line = _one_error_line(r)
        assert "space" in line.lower(), line
    finally:
        _umount(dest)
    assert str(dest) not in Path("/proc/mounts").read_text()
