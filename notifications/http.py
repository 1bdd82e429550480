"""What the Teams and webhook channels share: one POST with a timeout, status codes mapped to
transient or permanent :class:`DeliveryError`."""

from __future__ import annotations

import functools
import ssl
from typing import TYPE_CHECKING, Any

from monitor.errors import ConfigError
from monitor.secrets import read_secret
from notifications.base import DeliveryError, Notification
from notifications.settings import UrlSettings

if TYPE_CHECKING:  # imported when a message is sent or a URL checked, not by every command
    import httpx

TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def check_url(url: str, where: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host; a :class:`ConfigError` naming
    ``where`` otherwise (without the URL: it is a secret).  Checked when the configuration
    loads, so a typo is an error at start, not a failure retried for days."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(
            f"{where}: the URL read from there is not an absolute http(s) URL (not shown: it is "
            "a secret); check the variable or file"
        )
    return url


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The one TLS context every POST of this process uses: httpx would otherwise build one per
    client, loading the CA bundle each time (about 1 MB and a few milliseconds per message, and
    the allocator keeps the high-water mark: retries under a failing receiver grew the daemon's
    RSS by a fifth in ``bench/soak.py``)."""
    import httpx

    return httpx.create_ssl_context()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


async def post(
    channel: str, url: str, timeout: float, content: bytes, headers: dict[str, str] | None = None
) -> None:
    """POST ``content`` as JSON; return on 2xx, raise :class:`DeliveryError` otherwise.

    The URL is a secret (Teams Workflows and webhook URLs carry their credentials), so it never
    appears in an error message.
    """
    import httpx

    all_headers: dict[str, Any] = {
        "Content-Type": "application/json",
        "User-Agent": "relaycert",
        **(headers or {}),
    }
    try:
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, verify=tls_context()
        ) as client:
            response = await client.post(url, content=content, headers=all_headers)
    except httpx.TimeoutException as exc:
        raise DeliveryError(f"{channel}: no answer within {timeout:g}s") from exc
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise DeliveryError(f"{channel}: the URL is not usable", permanent=True) from exc
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{channel}: {type(exc).__name__}") from exc
    if 200 <= response.status_code < 300:
        return
    permanent = response.status_code not in TRANSIENT_STATUS
    raise DeliveryError(
        f"{channel}: HTTP {response.status_code} {response.reason_phrase}"
        + ("" if not permanent else "; check the URL and the receiving flow"),
        permanent=permanent,
        retry_after=_retry_after(response),
    )


class UrlChannel:
    """The shared part of the URL channels: the secret URL, checked at load, and one POST per
    message.  A channel says what it posts (:meth:`body`) and any headers (:meth:`headers`)."""

    def __init__(self, settings: UrlSettings, where: str) -> None:
        self.settings = settings
        url = read_secret(f"{where}.url", settings.url_env, settings.url_file) or ""
        self._url = check_url(url, f"{where}.url")

    @property
    def name(self) -> str:
        return self.settings.name

    def body(self, note: Notification) -> bytes:
        raise NotImplementedError

    def headers(self, note: Notification, body: bytes) -> dict[str, str] | None:
        return None

    async def send(self, note: Notification) -> None:
        body = self.body(note)
        timeout = self.settings.timeout.total_seconds()
        await post(self.name, self._url, timeout, body, self.headers(note, body))
