"""The report's chart over the period: per UTC day, the share of probes that succeeded and
the share of addresses without a critical alert open that day (compliance), read from the store
(:mod:`monitor.store.reads.reports`) and laid out as an inline SVG (drawn by the template,
which escapes every text)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from monitor.store.engine import Store
from monitor.store.reads import reports

WIDTH, HEIGHT, LEFT, TOP, BOTTOM = 900, 220, 48, 16, 36


@dataclass(frozen=True)
class Day:
    """One UTC day of the period: probes attempted and succeeded (every address), and how many
    addresses had a critical alert open at some time that day."""

    day: date
    attempts: int
    successes: int
    critical: int


def daily(store: Store, start: datetime, end: datetime) -> tuple[list[Day], int]:
    """Per day of the period, the counters and critical addresses; and how many addresses the
    store knows (the denominator of the day's compliance).  Summed by the database."""
    stored = reports.daily(store, start, end)
    counts, alerts = stored.counts, stored.critical
    days = []
    day = start.date()
    while day <= end.date():
        begin = datetime.combine(day, time.min, UTC)
        finish = begin + timedelta(days=1)
        hit = {
            (e, addr, direction)
            for (e, addr, direction), opened, resolved in alerts
            if opened is not None and opened < finish and (resolved is None or resolved >= begin)
        }
        attempts, successes = counts.get(day, (0, 0))
        days.append(Day(day, attempts, successes, len(hit)))
        day += timedelta(days=1)
    return days, stored.addresses


@dataclass(frozen=True)
class Chart:
    """Polyline points (``"x,y x,y"``) for the two series, and the axes' labels."""

    width: int
    height: int
    success: str
    compliance: str
    first: str
    last: str
    latest_success: str
    latest_compliance: str
    empty: bool


def chart(days: list[Day], addresses: int) -> Chart:
    """The geometry of the daily chart: y is 0-100 %, one x step per day."""
    plot_w, plot_h = WIDTH - LEFT - 16, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(days) - 1, 1)

    def y(share: float) -> float:
        return round(TOP + plot_h * (1 - share), 1)

    success, compliance = [], []
    for index, day in enumerate(days):
        x = round(LEFT + index * step, 1)
        if day.attempts:
            success.append(f"{x},{y(day.successes / day.attempts)}")
        if addresses and (day.attempts or day.critical):  # a day relaycert was watching
            compliance.append(f"{x},{y(1 - min(day.critical, addresses) / addresses)}")

    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.0%}"

    last = days[-1] if days else None
    return Chart(
        WIDTH,
        HEIGHT,
        " ".join(success),
        " ".join(compliance),
        f"{days[0].day:%Y-%m-%d}" if days else "",
        f"{days[-1].day:%Y-%m-%d}" if days else "",
        share(last.successes / last.attempts if last and last.attempts else None),
        share(1 - min(last.critical, addresses) / addresses if last and addresses else None),
        not success and not compliance,
    )
