"""Text from hostile bytes, made safe to keep and show."""

from __future__ import annotations

MAX_TEXT = 500


def printable(raw: bytes) -> str:
    """Printable text from hostile bytes: invalid UTF-8 replaced, control characters (ESC, NUL,
    CR) made ``?``, clipped to :data:`MAX_TEXT` characters."""
    if len(raw) <= MAX_TEXT and raw.isascii():
        text = raw.decode("ascii")
        if text.isprintable():
            return text
    text = raw[: MAX_TEXT * 4].decode("utf-8", "replace")
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "\u2026"
