"""How a scan's results feed baselines and alerts (plain settings, cheap to import: a one-shot
scan without a store never loads the database layer)."""

from __future__ import annotations

from dataclasses import dataclass

from monitor.alerts.settings import AlertSettings
from notifications.settings import ChannelSettings

__all__ = ["Tracking"]


@dataclass(frozen=True)
class Tracking:
    """How a scan's results feed baselines and alerts."""

    auto_accept: bool = True
    alerts: AlertSettings | None = None  # None: no alerting (one-shot scans)
    channels: tuple[ChannelSettings, ...] = ()
    docs_url: str = ""
