"""When ``cert.expiring`` fires: thresholds relative to a certificate's lifetime.  Plain data,
no I/O; ``checks.base`` re-exports it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class ExpiryThresholds:
    """``cert.expiring`` fires below ``min(days, fraction * lifetime)`` for each level."""

    warning_days: float = 30.0
    warning_fraction: float = 1 / 3
    critical_days: float = 7.0
    critical_fraction: float = 0.1
    # A certificate relaycert renews itself at this share of its lifetime left: the warning
    # comes only once that renewal is late (by min(2 days, a quarter of that share)), not
    # before every routine renewal.
    renew_fraction: float | None = None

    def warning_at(self, lifetime: timedelta) -> timedelta:
        at = min(timedelta(days=self.warning_days), lifetime * self.warning_fraction)
        if self.renew_fraction is not None:
            renew_at = lifetime * self.renew_fraction
            late = renew_at - min(timedelta(days=2), renew_at / 4)
            at = min(at, late)
        return max(at, self.critical_at(lifetime))

    def critical_at(self, lifetime: timedelta) -> timedelta:
        return min(timedelta(days=self.critical_days), lifetime * self.critical_fraction)
