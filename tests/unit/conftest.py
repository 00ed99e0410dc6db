"""Fixtures shared by the unit tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

GPG = ["gpg", "--batch", "--no-tty", "--disable-dirmngr", "--no-auto-key-retrieve"]


@pytest.fixture
def gpg_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """A throwaway GNUPGHOME with one passphrase-less ed25519 signing key.

    Returns ``(home, fingerprint, uid)``.  The home sits in a short temporary
    path (gpg-agent's socket path is limited); the agent that key generation
    starts there is stopped, by home, at teardown.
    """
    missing = [t for t in ("gpg", "gpgconf") if shutil.which(t) is None]
    if missing:
        msg = f"missing host tools: {', '.join(missing)}"
        if os.environ.get("CI") or os.environ.get("GITIAN_STRICT_SKIPS"):
            pytest.fail(msg + " (skips are failures in CI)")
        pytest.skip(msg)
    home = tmp_path_factory.mktemp("gpg")
    home.chmod(0o700)
    uid = "Gitian Test Signer <signer@example.invalid>"
    try:
        subprocess.run(
            [
                *GPG,
                "--homedir",
                str(home),
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--quick-gen-key",
                uid,
                "ed25519",
                "sign",
                "never",
            ],
            check=True,
            capture_output=True,
        )
        out = subprocess.run(
            [*GPG, "--homedir", str(home), "--with-colons", "--list-secret-keys"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        fpr = next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))
        yield str(home), fpr, uid
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
            check=False,
            capture_output=True,
        )
