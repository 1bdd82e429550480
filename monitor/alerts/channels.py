"""The configured channels, built once per loaded configuration; their secrets are read now, so
a missing one is a :class:`~monitor.errors.ConfigError` at start, reload or ``notify-test``."""

from __future__ import annotations

from monitor.config.loader import Config
from notifications.base import Notifier
from notifications.registry import build


def build_channels(config: Config) -> dict[str, Notifier]:
    """Every configured channel, by name."""
    return {
        c.name: build(config.resolved(c), config.channel_where(i))
        for i, c in enumerate(config.channels)
    }
