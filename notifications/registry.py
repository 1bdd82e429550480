"""The built-in channels, in one literal mapping: ``type`` -> (settings model, channel class)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from notifications.base import Notifier
from notifications.capture import CaptureChannel, CaptureSettings
from notifications.email import EmailChannel, EmailSettings
from notifications.pagerduty import PagerDutyChannel, PagerDutySettings
from notifications.settings import ChannelSettings
from notifications.slack import SlackChannel, SlackSettings
from notifications.teams import TeamsChannel, TeamsSettings
from notifications.webhook import WebhookChannel, WebhookSettings

AnyChannelSettings = Annotated[
    EmailSettings
    | TeamsSettings
    | WebhookSettings
    | SlackSettings
    | PagerDutySettings
    | CaptureSettings,
    Field(discriminator="type"),
]

CHANNELS: dict[type[ChannelSettings], Callable[[Any, str], Notifier]] = {
    EmailSettings: EmailChannel,
    TeamsSettings: TeamsChannel,
    WebhookSettings: WebhookChannel,
    SlackSettings: SlackChannel,
    PagerDutySettings: PagerDutyChannel,
    CaptureSettings: CaptureChannel,
}


def build(settings: ChannelSettings, where: str) -> Notifier:
    """The channel for ``settings``; ``where`` names its config table in errors."""
    return CHANNELS[type(settings)](settings, where)
