"""Slack through an incoming webhook (a Block Kit message)."""

from __future__ import annotations

import json
from typing import Literal

from notifications.base import Notification
from notifications.http import UrlChannel, UrlSettings
from notifications.oncall import slack_message


class SlackSettings(UrlSettings):
    type: Literal["slack"]  # the incoming-webhook URL is a secret


class SlackChannel(UrlChannel):
    def body(self, note: Notification) -> bytes:
        return json.dumps(slack_message(note)).encode()
