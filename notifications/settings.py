"""Every channel's settings model, and the union the configuration file is parsed with.

The configuration (``monitor.config``) imports this module and nothing else of
``notifications``: a settings model is plain data, a channel (its own module) is what sends.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

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


EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


class UrlSettings(ChannelSettings):
    """A channel that posts to a URL that is itself a credential (Teams Workflows, Slack and
    generic webhooks): it is read from ``url_env`` or ``url_file``, never the file."""

    url_env: str | None = None
    url_file: Path | None = None


class EmailSettings(ChannelSettings):
    type: Literal["email"]
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    recipients: tuple[str, ...] = Field(min_length=1)
    ca_file: Path | None = None  # trust for the relay's certificate; default: system roots


class TeamsSettings(UrlSettings):
    # The Workflows URL carries its own credentials: it is a secret. Any host is accepted
    # (Workflows URLs live on several domains).
    type: Literal["teams"]


class SlackSettings(UrlSettings):
    type: Literal["slack"]  # the incoming-webhook URL is a secret


class WebhookSettings(UrlSettings):
    type: Literal["webhook"]
    secret_env: str | None = None
    secret_file: Path | None = None


class PagerDutySettings(ChannelSettings):
    type: Literal["pagerduty"]
    routing_key_env: str | None = None  # the integration's routing key is a secret
    routing_key_file: Path | None = None
    events_url: str = EVENTS_URL  # the EU service: https://events.eu.pagerduty.com/v2/enqueue


class CaptureSettings(ChannelSettings):
    type: Literal["file", "console"]
    path: Path | None = None  # for type = "file"


AnyChannelSettings = Annotated[
    EmailSettings
    | TeamsSettings
    | WebhookSettings
    | SlackSettings
    | PagerDutySettings
    | CaptureSettings,
    Field(discriminator="type"),
]
