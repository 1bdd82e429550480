"""Settings shared by every channel."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict

from monitor.config.common import Name
from monitor.config.units import Duration


class ChannelSettings(BaseModel):
    """Keys every ``[[channels]]`` table has; each channel adds its own."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    name: Name
    type: str
    severities: tuple[str, ...] = ("warning", "unknown", "critical")
    connectors: tuple[str, ...] = ()  # empty: every connector
    timeout: Duration = timedelta(seconds=15)

    def routes(self, severity: str, connector: str | None) -> bool:
        """Does a message of ``severity`` about ``connector`` go to this channel?"""
        return severity in self.severities and (not self.connectors or connector in self.connectors)
