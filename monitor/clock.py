"""The clock: every time is tz-aware UTC, and code that tests must move in time takes a
:data:`Clock` (defaulting to :func:`utcnow`) instead of reading the system clock itself."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeAlias

Clock: TypeAlias = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)
