"""Slack through an incoming webhook (a Block Kit message)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from monitor.secrets import read_secret
from notifications.base import Notification
from notifications.http import check_url, post
from notifications.oncall import slack_message
from notifications.settings import ChannelSettings


class SlackSettings(ChannelSettings):
    type: Literal["slack"]
    url_env: str | None = None  # the incoming-webhook URL is a secret
    url_file: Path | None = None


class SlackChannel:
    def __init__(self, settings: SlackSettings, where: str) -> None:
        self.settings = settings
        url = read_secret(f"{where}.url", settings.url_env, settings.url_file) or ""
        self._url = check_url(url, f"{where}.url")

    @property
    def name(self) -> str:
        return self.settings.name

    async def send(self, note: Notification) -> None:
        body = json.dumps(slack_message(note)).encode()
        await post(self.name, self._url, self.settings.timeout.total_seconds(), body)
