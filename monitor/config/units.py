"""Units at the edge: ``"10s"``, ``"5m"``, ``"6h"``, ``"90d"``, ``"2w"`` become timedeltas."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_SECONDS = 3650 * 86400  # ten years: longer than any interval, period or retention makes sense


def parse_duration(value: Any, allow_zero: bool = False) -> timedelta:
    """``"10s"``, ``"5m"``, ``"6h"``, ``"90d"``, ``"2w"``, or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '10s', '5m' or '90d'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"'{value}' is not a duration; write e.g. '10s', '5m', '6h' or '90d'")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds != seconds or seconds < 0 or (seconds == 0 and not allow_zero):  # NaN, negative
        raise ValueError("a duration must be greater than zero")
    if seconds > MAX_SECONDS:
        raise ValueError(f"'{value}' is too long; at most 3650d (ten years)")
    return timedelta(seconds=seconds)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
DurationOrZero = Annotated[timedelta, BeforeValidator(lambda v: parse_duration(v, True))]
