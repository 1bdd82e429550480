"""Microsoft Teams through a Workflows webhook ("When a Teams webhook request is received")."""

from __future__ import annotations

import json

from notifications.base import Notification
from notifications.http import UrlChannel
from notifications.render import adaptive_card


class TeamsChannel(UrlChannel):
    def body(self, note: Notification) -> bytes:
        return json.dumps(adaptive_card(note)).encode()
