"""An attacker's tool for the tests: OpenPGP v4 signatures with any subpackets.

gpg refuses to put a non-ASCII policy or keyserver URL, or a Signer's User ID
that is not a mail address, into a signature it makes; an attacker writes the
packet himself.  This builds such packets (RFC 4880 5.2.3) and signs them
with an RSA key that real gpg generated, taken from gpg's own export of the
(unprotected) secret key - hand-written because none of the libraries the
project uses builds OpenPGP packets.  The signatures are then checked only
by real gpg.
"""

from __future__ import annotations

import hashlib
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

GPG = ["gpg", "--batch", "--no-tty", "--disable-dirmngr", "--no-auto-key-retrieve"]
# The DER prefix of a SHA-256 DigestInfo (RFC 4880 5.2.2).
_SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")

# Signature subpacket types (RFC 4880 5.2.3.1).
CREATED, ISSUER, NOTATION, PREFERRED_KEYSERVER, POLICY_URI = 2, 16, 20, 24, 26
SIGNERS_USER_ID, ISSUER_FPR = 28, 33


@dataclass(frozen=True)
class RsaKey:
    """An RSA signing key gpg made: its public key packet body and secrets."""

    fingerprint: str
    public_body: bytes
    n: int
    d: int

    @property
    def keyid(self) -> str:
        return self.fingerprint[-16:]


def _packets(data: bytes) -> list[tuple[int, bytes]]:
    """(tag, body) of each packet in a binary OpenPGP stream."""
    out = []
    i = 0
    while i < len(data):
        h = data[i]
        if h & 0x40:  # new format
            tag = h & 0x3F
            o = data[i + 1]
            if o < 192:
                n, i = o, i + 2
            elif o < 224:
                n, i = ((o - 192) << 8) + data[i + 2] + 192, i + 3
            else:
                n, i = struct.unpack(">I", data[i + 2 : i + 6])[0], i + 6
        else:
            tag = (h >> 2) & 0x0F
            size = {0: 1, 1: 2, 2: 4}[h & 3]
            n = int.from_bytes(data[i + 1 : i + 1 + size], "big")
            i += 1 + size
        out.append((tag, data[i : i + n]))
        i += n
    return out


def _mpi(data: bytes, i: int) -> tuple[int, int]:
    bits = struct.unpack(">H", data[i : i + 2])[0]
    n = (bits + 7) // 8
    return int.from_bytes(data[i + 2 : i + 2 + n], "big"), i + 2 + n


def _to_mpi(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return struct.pack(">H", value.bit_length()) + raw


def make_rsa_key(home: Path, uid: str) -> RsaKey:
    """A new RSA key without a passphrase in ``home``, with its secrets."""
    base = [*GPG, "--homedir", str(home), "--pinentry-mode", "loopback", "--passphrase", ""]
    subprocess.run(
        [*base, "--quick-gen-key", uid, "rsa2048", "sign", "never"],
        check=True,
        capture_output=True,
    )
    secret = subprocess.run(
        [*base, "--export-secret-keys", uid], check=True, capture_output=True
    ).stdout
    body = next(b for tag, b in _packets(secret) if tag == 5)
    assert body[0] == 4 and body[5] == 1, "a v4 RSA key"
    n, i = _mpi(body, 6)
    e, i = _mpi(body, i)
    public = body[:i]
    assert body[i] == 0, "the secret key is not protected"
    d, i = _mpi(body, i + 1)
    fingerprint = hashlib.sha1(b"\x99" + struct.pack(">H", len(public)) + public).hexdigest()
    return RsaKey(fingerprint.upper(), public, n, d)


def subpacket(kind: int, payload: bytes) -> bytes:
    size = len(payload) + 1
    if size < 192:
        head = bytes([size])
    elif size < 8384:
        size -= 192
        head = bytes([(size >> 8) + 192, size & 0xFF])
    else:
        head = b"\xff" + struct.pack(">I", size)
    return head + bytes([kind]) + payload


def notation(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return subpacket(NOTATION, b"\x80\0\0\0" + struct.pack(">HH", len(n), len(v)) + n + v)


def detached_signature(
    key: RsaKey, data: bytes, hashed: bytes = b"", unhashed: bytes = b""
) -> bytes:
    """A binary detached signature (class 0x00) of ``data`` by ``key``, with the
    creation time, the issuer fingerprint and key id, plus ``hashed`` and
    ``unhashed`` subpackets of the caller's."""
    hashed = (
        subpacket(CREATED, struct.pack(">I", int(time.time()) - 60))
        + subpacket(ISSUER_FPR, b"\x04" + bytes.fromhex(key.fingerprint))
        + hashed
    )
    unhashed = subpacket(ISSUER, bytes.fromhex(key.keyid)) + unhashed
    head = bytes([4, 0x00, 1, 8]) + struct.pack(">H", len(hashed)) + hashed
    digest = hashlib.sha256(data + head + b"\x04\xff" + struct.pack(">I", len(head))).digest()
    k = (key.n.bit_length() + 7) // 8
    info = _SHA256_PREFIX + digest
    em = b"\x00\x01" + b"\xff" * (k - len(info) - 3) + b"\x00" + info
    s = pow(int.from_bytes(em, "big"), key.d, key.n)
    body = head + struct.pack(">H", len(unhashed)) + unhashed + digest[:2] + _to_mpi(s)
    return bytes([0xC2, 0xFF]) + struct.pack(">I", len(body)) + body
