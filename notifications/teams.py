"""Microsoft Teams through a Workflows webhook ("When a Teams webhook request is received")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from monitor.secrets import read_secret
from notifications.base import Notification
from notifications.http import check_url, post
from notifications.render import adaptive_card
from notifications.settings import ChannelSettings


class TeamsSettings(ChannelSettings):
    type: Literal["teams"]
    # The Workflows URL carries its own credentials: it is a secret. Any host is accepted
    # (Workflows URLs live on several domains).
    url_env: str | None = None
    url_file: Path | None = None


class TeamsChannel:
    def __init__(self, settings: TeamsSettings, where: str) -> None:
        self.settings = settings
        url = read_secret(f"{where}.url", settings.url_env, settings.url_file) or ""
        self._url = check_url(url, f"{where}.url")

    @property
    def name(self) -> str:
        return self.settings.name

    async def send(self, note: Notification) -> None:
        body = json.dumps(adaptive_card(note)).encode()
        await post(self.name, self._url, self.settings.timeout.total_seconds(), body)
