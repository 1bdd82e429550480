"""A generic JSON webhook (PagerDuty, Opsgenie or Slack bridges), optionally HMAC-signed.

The body is the notification as JSON.  With a secret, ``X-Relaycert-Signature: sha256=<hex>``
is the HMAC-SHA256 of the exact body; ``Idempotency-Key`` is the same for every attempt of one
message, so a receiver can drop a repeat after a crash mid-delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from monitor.secrets import read_secret
from notifications.base import Notification
from notifications.http import UrlChannel
from notifications.settings import WebhookSettings


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookChannel(UrlChannel):
    def __init__(self, settings: WebhookSettings, where: str) -> None:
        super().__init__(settings, where)
        self._secret = read_secret(
            f"{where}.secret", settings.secret_env, settings.secret_file, required=False
        )

    def body(self, note: Notification) -> bytes:
        return json.dumps({"source": "relaycert", **note.to_dict()}).encode()

    def headers(self, note: Notification, body: bytes) -> dict[str, str]:
        headers = {"Idempotency-Key": note.key}
        if self._secret:
            headers["X-Relaycert-Signature"] = signature(self._secret, body)
        return headers
