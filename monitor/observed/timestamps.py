"""Log timestamps to tz-aware UTC.

RFC 3339 (``2024-12-07T10:44:01.123456+01:00``, rsyslog's high-precision format, journald
exports) carry their own year and offset.  Traditional syslog (``Dec  7 10:44:01``) carries
neither, so:

- the **zone** is the one the logging host writes in: the configured ``zone`` (an IANA name), by
  default this host's local zone; a time that a DST change makes ambiguous is read as its first
  occurrence (``fold=0``).
- the **year** is the one that puts the line at most one day after the *reference*: the file's
  modification time when a whole file is read (every line was written before it), the current
  time when a live file is followed.  So ``Dec 31`` read on ``Jan 1`` is last year's, and a line
  dated a day ahead of the reference (a clock a little fast) stays in this year.  ``Feb 29`` goes
  back to the latest leap year that fits.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo

_NAMES = b"Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec"
MONTHS = {name: i + 1 for i, name in enumerate(_NAMES.split())}
_TRADITIONAL = re.compile(rb"([A-Z][a-z]{2}) ([ \d]?\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))? ")
_RFC3339 = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d) ")
AHEAD = timedelta(days=1)


class Timestamps:
    """Reads the timestamp at the start of a line; caches by its text (many lines share a
    second).  ``reference`` may be moved forward by the caller (a follower sets it to now)."""

    def __init__(self, reference: datetime, zone: tzinfo | None = None) -> None:
        self._reference = reference
        self.zone = zone if zone is not None else datetime.now().astimezone().tzinfo
        self._cache: dict[bytes, datetime] = {}

    @property
    def reference(self) -> datetime:
        return self._reference

    @reference.setter
    def reference(self, value: datetime) -> None:
        if value.date() != self._reference.date():
            self._cache.clear()  # a year resolved against the old reference may differ
        self._reference = value

    def parse(self, line: bytes) -> tuple[datetime, int] | None:
        """The time in UTC and where the rest of the line starts, or ``None``."""
        if line[:1].isdigit():
            found = _RFC3339.match(line)
            if found is None:
                return None
            text = found.group(0)
            at = self._cache.get(text)
            if at is None:
                at = self._remember(text, _iso(text[:-1].decode()))
            return (at, found.end()) if at is not None else None
        head = line[:16]
        at = self._cache.get(head)
        if at is not None:
            return at, 16
        found = _TRADITIONAL.match(line)
        if found is None:
            return None
        at = self._remember(found.group(0), self._traditional(found))
        return (at, found.end()) if at is not None else None

    def _remember(self, key: bytes, at: datetime | None) -> datetime | None:
        if at is not None:
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = at
        return at

    def _traditional(self, found: re.Match[bytes]) -> datetime | None:
        month = MONTHS.get(found.group(1))
        if month is None:
            return None
        day, hour, minute, second = (int(found.group(i)) for i in range(2, 6))
        micro = int((found.group(6) or b"0").ljust(6, b"0"))
        ceiling = self.reference + AHEAD
        year = self.reference.astimezone(self.zone).year
        for candidate in range(year, year - 9, -1):
            try:
                local = datetime(
                    candidate, month, day, hour, minute, second, micro, tzinfo=self.zone
                )
            except ValueError:  # Feb 29 of a common year, Feb 31
                continue
            if local <= ceiling:
                return local.astimezone(UTC)
        return None


def _iso(text: str) -> datetime | None:
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    if "." in text:  # nanoseconds (journald) are more than fromisoformat reads
        head, _, rest = text.partition(".")
        digits, sign, offset = rest[:-6], rest[-6:-5], rest[-5:]
        text = f"{head}.{digits[:6].ljust(6, '0')}{sign}{offset}"
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        return None
