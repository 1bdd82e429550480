"""The expiry timeline: bar geometry for the inline SVG (drawn by the HTML template, where
Jinja2 escapes every label)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from checks.certinfo import clip
from monitor.certview import CertInfo

WIDTH, LABEL, ROW, TOP = 900, 290, 26, 30


@dataclass(frozen=True)
class Bar:
    label: str
    x: float
    width: float
    y: float
    color: str
    days_left: float
    not_after: str
    title: str = ""  # the full subject, shown on hover


@dataclass(frozen=True)
class Timeline:
    bars: list[Bar]
    today_x: float
    height: int
    width: int
    start: str
    end: str


def short_name(cert: CertInfo) -> str:
    """What fits beside a bar: the CN, else the first SAN, else the subject."""
    for part in cert.subject.split(","):
        if part.strip().upper().startswith("CN="):
            return part.strip()[3:]
    return cert.sans[0] if cert.sans else cert.subject


def timeline(items: list[tuple[str, CertInfo]], now: datetime) -> Timeline:
    start = min([c.not_before for _, c in items] + [now - timedelta(days=30)])
    end = max([c.not_after for _, c in items] + [now + timedelta(days=30)])
    span = (end - start).total_seconds() or 1.0
    plot = WIDTH - LABEL - 10

    def x(when: datetime) -> float:
        return round(LABEL + plot * (when - start).total_seconds() / span, 1)

    bars = []
    for index, (endpoint, cert) in enumerate(items):
        color = (
            "#b00020" if cert.days_left <= 0 else "#e08a00" if cert.days_left < 30 else "#2e7d32"
        )
        left, right = x(cert.not_before), x(cert.not_after)
        bars.append(
            Bar(
                clip(f"{endpoint}: {short_name(cert)}", 44),
                left,
                max(right - left, 2.0),
                TOP + index * ROW,
                color,
                cert.days_left,
                f"{cert.not_after:%Y-%m-%d}",
                clip(f"{endpoint}: {cert.subject}", 300),
            )
        )
    return Timeline(
        bars, x(now), TOP + len(items) * ROW + 20, WIDTH, f"{start:%Y-%m-%d}", f"{end:%Y-%m-%d}"
    )
