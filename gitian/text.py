"""Showing what other people wrote, safely: the one escaping function.

Names of files and signers, descriptor values, key ids, gpg's messages and
parser problems all reach the terminal through :func:`printable`, so that
none of them can move the cursor, change colours, reorder text (bidi
overrides) or break a one-line message.
"""

from __future__ import annotations


def printable(text: str, *, quote: bool = False, limit: int | None = None) -> str:
    """``text`` with every character that is not printable shown as an escape.

    C0 and C1 controls, DEL, line and paragraph separators, bidi and other
    format characters, unassigned code points and the undecodable bytes of a
    file name (lone surrogates from ``surrogateescape``) come out as
    ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``.  With ``quote`` the result is
    in single quotes (backslashes and quotes escaped, as :func:`repr` does);
    with ``limit`` it is cut to about that many characters, ending in ``...``.
    """
    if quote:
        text = text.replace("\\", "\\\\").replace("'", "\\'")
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else _escape(ch) for ch in text)
    if quote:
        text = f"'{text}'"
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 3)] + ("...'" if quote else "...")
    return text


def _escape(ch: str) -> str:
    o = ord(ch)
    if 0xDC80 <= o <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{o - 0xDC00:02x}"
    if o < 0x100:
        return f"\\x{o:02x}"
    return f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"
