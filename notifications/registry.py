"""The built-in channels, in one literal mapping: ``type`` -> (settings model, channel class)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from notifications.base import Notifier
from notifications.capture import CaptureChannel
from notifications.email import EmailChannel
from notifications.pagerduty import PagerDutyChannel
from notifications.settings import (
    CaptureSettings,
    ChannelSettings,
    EmailSettings,
    PagerDutySettings,
    SlackSettings,
    TeamsSettings,
    WebhookSettings,
)
from notifications.slack import SlackChannel
from notifications.teams import TeamsChannel
from notifications.webhook import WebhookChannel

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
