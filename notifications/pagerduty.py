"""PagerDuty Events API v2: an alert opens (or escalates) an incident, its recovery resolves
it (the same ``dedup_key``)."""

from __future__ import annotations

import json

from monitor.secrets import read_secret
from notifications.base import Notification
from notifications.http import check_url, post
from notifications.oncall import pagerduty_event
from notifications.settings import PagerDutySettings


class PagerDutyChannel:
    def __init__(self, settings: PagerDutySettings, where: str) -> None:
        self.settings = settings
        self._key = (
            read_secret(f"{where}.routing_key", settings.routing_key_env, settings.routing_key_file)
            or ""
        )
        self._url = check_url(settings.events_url, f"{where}.events_url")

    @property
    def name(self) -> str:
        return self.settings.name

    async def send(self, note: Notification) -> None:
        body = json.dumps(pagerduty_event(note, self._key)).encode()
        await post(self.name, self._url, self.settings.timeout.total_seconds(), body)
