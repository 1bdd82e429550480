"""The notifier contract: what a channel receives and how it reports failure.

A channel only sends.  Rendering (:mod:`notifications.render`), retries with backoff and the
outbox (:mod:`monitor.alerts.outbox`) are shared; the daemon imports only this module and the
registry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from email.message import EmailMessage
from typing import Any, Protocol, runtime_checkable

from monitor.errors import DeliveryError

__all__ = ["DeliveryError", "Mailer", "Notification", "Notifier"]


@dataclass(frozen=True, slots=True)
class Notification:
    """One message about one alert transition (or a test).  Every text field may carry
    attacker-controlled certificate text; renderers escape it for their medium."""

    kind: str  # opened | escalated | reminder | resolved | test
    severity: str
    rule: str
    title: str
    endpoint: str
    host: str
    port: int
    address: str
    connector: str | None
    message: str
    at: str  # ISO 8601 UTC
    key: str  # idempotency key: the same for every attempt of the same message
    days_left: float | None = None
    fingerprint: str | None = None
    docs_url: str | None = None
    # which certificate: from_exchange_online (served) or to_exchange_online (client)
    direction: str | None = None
    # the served certificate: the delivery contract it was judged by (one line)
    contract: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Notification:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


@runtime_checkable
class Notifier(Protocol):
    """A channel.  ``send`` returns when the far end accepted the message and raises
    :class:`DeliveryError` (``permanent=True`` for errors retrying cannot fix) otherwise.
    It must finish within its configured timeout."""

    @property
    def name(self) -> str: ...

    async def send(self, note: Notification) -> None: ...


@runtime_checkable
class Mailer(Notifier, Protocol):
    """A channel that also sends a prepared e-mail (the daemon's scheduled reports), from
    ``sender`` to its ``recipients`` unless the caller names others."""

    @property
    def sender(self) -> str: ...

    @property
    def recipients(self) -> tuple[str, ...]: ...

    async def send_message(self, message: EmailMessage) -> None: ...
