"""Column types that keep control characters out of the store, whoever writes.

Server replies, certificate fields, EHLO names, envelopes and error texts are attacker-controlled:
an ESC or BEL stored today is a terminal escape in whatever reads the database tomorrow (a
``sqlite3`` shell, ``psql``, another tool's report).  Every text column of such origin is
:class:`PrintableText` and every JSON column :class:`PrintableJSON`: on the way in, each C0 and
C1 control character but tab and newline (and DEL) becomes U+FFFD, so what was there stays
visible as "something was here" without its effect.  Outputs escape on their own as well.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import JSON, Text, TypeDecorator
from sqlalchemy.engine import Dialect

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
REPLACEMENT = "\ufffd"


def printable(text: str) -> str:
    """``text`` with its control characters (but tab and newline) replaced by U+FFFD."""
    return _CONTROL.sub(REPLACEMENT, text)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


class PrintableText(TypeDecorator[str]):
    """Text stored without control characters."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else printable(value)


class PrintableJSON(TypeDecorator[Any]):
    """JSON whose strings (keys and values, at any depth) are stored without control
    characters."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return _clean(value)
