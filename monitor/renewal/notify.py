"""Messages about renewals: a failed attempt, and the recovery after failures, enqueued in the
outbox for every channel that routes critical messages of the renewal's connector."""

from __future__ import annotations

from typing import TYPE_CHECKING

from checks.base import Severity
from monitor.renewal.outcome import Outcome, Result
from monitor.store.engine import Store
from monitor.store.messages import enqueue_routed
from notifications.base import Notification

if TYPE_CHECKING:
    from sqlmodel import Session  # the store's transaction

    from monitor.renewal.context import RenewalContext

TITLES: dict[tuple[str, Result], str] = {
    ("opened", Result.CA_UNREACHABLE): "CA unreachable for renewal checks (nothing due yet)",
    ("resolved", Result.SKIPPED): "Renewal checks work again (nothing due)",
}


def alert(
    context: RenewalContext,
    store: Store,
    row_id: int,
    outcome: Outcome,
    kind: str = "opened",
    extra: str = "",
    severity: Severity = Severity.CRITICAL,
) -> None:
    """Enqueue a message about a failed renewal (critical; ``unknown`` for a CA unreachable
    too long while nothing is due; ``kind="resolved"``: the recovery after either) for every
    channel that routes it.  ``extra`` follows the detail (days left, the next attempt)."""
    now, settings = context.clock(), context.settings
    first = next((e for e in context.endpoints if e.name == settings.endpoints[0]), None)
    connector = first.connector if first else None

    title = TITLES.get(
        (kind, outcome.outcome),
        "Certificate renewal failed" if kind == "opened" else "Certificate renewed",
    )

    def note(channel: str) -> Notification:
        return Notification(
            kind=kind,
            severity=severity.value,
            rule=f"renewal.{outcome.outcome.value}",
            title=title,
            endpoint=", ".join(settings.endpoints),
            host=first.host if first else "-",
            port=first.port if first else 0,
            address="",
            connector=connector,
            message=f"renewal '{settings.name}': {outcome.detail}{extra}",
            at=now.isoformat(),
            key=f"relaycert:renewal:{row_id}:{channel}",
            fingerprint=outcome.new_sha256,
        )

    def work(session: Session) -> None:
        enqueue_routed(session, context.channels, severity.value, connector, note, now)

    store.retrying(f"queueing messages about renewal '{settings.name}'", work)
