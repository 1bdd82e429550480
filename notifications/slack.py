"""Slack through an incoming webhook (a Block Kit message)."""

from __future__ import annotations

import json

from notifications.base import Notification
from notifications.http import UrlChannel
from notifications.oncall import slack_message


class SlackChannel(UrlChannel):
    def body(self, note: Notification) -> bytes:
        return json.dumps(slack_message(note)).encode()
