"""Microsoft Teams through a Workflows webhook ("When a Teams webhook request is received")."""

from __future__ import annotations

import json
from typing import Literal

from notifications.base import Notification
from notifications.http import UrlChannel, UrlSettings
from notifications.render import adaptive_card


class TeamsSettings(UrlSettings):
    # The Workflows URL carries its own credentials: it is a secret. Any host is accepted
    # (Workflows URLs live on several domains).
    type: Literal["teams"]


class TeamsChannel(UrlChannel):
    def body(self, note: Notification) -> bytes:
        return json.dumps(adaptive_card(note)).encode()
