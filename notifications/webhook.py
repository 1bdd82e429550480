"""A generic JSON webhook (PagerDuty, Opsgenie or Slack bridges), optionally HMAC-signed.

The body is the notification as JSON.  With a secret, ``X-Relaycert-Signature: sha256=<hex>``
is the HMAC-SHA256 of the exact body; ``Idempotency-Key`` is the same for every attempt of one
message, so a receiver can drop a repeat after a crash mid-delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Literal

from monitor.secrets import read_secret
from notifications.base import Notification
from notifications.http import check_url, post
from notifications.settings import ChannelSettings


class WebhookSettings(ChannelSettings):
    type: Literal["webhook"]
    url_env: str | None = None
    url_file: Path | None = None
    secret_env: str | None = None
    secret_file: Path | None = None


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookChannel:
    def __init__(self, settings: WebhookSettings, where: str) -> None:
        self.settings = settings
        url = read_secret(f"{where}.url", settings.url_env, settings.url_file) or ""
        self._url = check_url(url, f"{where}.url")
        self._secret = read_secret(
            f"{where}.secret", settings.secret_env, settings.secret_file, required=False
        )

    @property
    def name(self) -> str:
        return self.settings.name

    async def send(self, note: Notification) -> None:
        body = json.dumps({"source": "relaycert", **note.to_dict()}).encode()
        headers = {"Idempotency-Key": note.key}
        if self._secret:
            headers["X-Relaycert-Signature"] = signature(self._secret, body)
        await post(self.name, self._url, self.settings.timeout.total_seconds(), body, headers)
