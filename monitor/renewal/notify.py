"""Messages about renewals: a failed attempt, and the recovery after failures, enqueued in the
outbox for every channel that routes critical messages of the renewal's connector."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session

from checks.base import Severity
from monitor.config.loader import Config
from monitor.renewal.outcome import Outcome
from monitor.renewal.settings import RenewalSettings
from monitor.store.engine import Store
from monitor.store.messages import enqueue
from notifications.base import Notification


def alert(
    config: Config,
    store: Store,
    row_id: int,
    settings: RenewalSettings,
    outcome: Outcome,
    kind: str = "opened",
) -> None:
    """Enqueue a critical message about a failed renewal (``kind="resolved"``: the recovery
    after earlier failures) for every routed channel."""
    now = datetime.now(UTC)
    first = config.endpoint(settings.endpoints[0])
    connector = first.connector if first else None

    def work(session: Session) -> None:
        for channel in config.channels:
            if not channel.routes("critical", connector):
                continue
            note = Notification(
                kind=kind,
                severity=Severity.CRITICAL.value,
                rule=f"renewal.{outcome.outcome.value}",
                title="Certificate renewal failed" if kind == "opened" else "Certificate renewed",
                endpoint=", ".join(settings.endpoints),
                host=first.host if first else "-",
                port=first.port if first else 0,
                address="",
                connector=connector,
                message=f"renewal '{settings.name}': {outcome.detail}",
                at=now.isoformat(),
                key=f"relaycert:renewal:{row_id}:{channel.name}",
                fingerprint=outcome.new_sha256,
            )
            enqueue(session, note, channel.name, now)

    store.retrying(f"queueing messages about renewal '{settings.name}'", work)
