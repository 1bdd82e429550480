"""The outbox table: a message is written (in the transaction that caused it) before it is sent,
claimed by one sender with a conditional ``UPDATE`` (a lease), and marked sent, retried or
failed only after its channel answered."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, or_, select, update
from sqlmodel import Session, col

from monitor.store.engine import Store
from monitor.store.models import OutboxRow
from notifications.base import Notification
from notifications.settings import ChannelSettings


def enqueue(
    session: Session, note: Notification, channel: str, now: datetime, alert_id: int | None = None
) -> None:
    """Write one message to the outbox, due now; ``note.key`` makes it unique."""
    session.add(
        OutboxRow(
            dedup_key=note.key,
            channel=channel,
            alert_id=alert_id,
            kind=note.kind,
            payload=note.to_dict(),
            status="pending",
            created_at=now,
            next_attempt_at=now,
        )
    )


def enqueue_routed(
    session: Session,
    channels: Iterable[ChannelSettings],
    severity: str,
    connector: str | None,
    note_for: Callable[[str], Notification],
    now: datetime,
    alert_id: int | None = None,
) -> int:
    """One message for every channel that routes ``severity`` about ``connector``
    (``note_for(channel name)`` makes it); how many were written."""
    written = 0
    for channel in channels:
        if channel.routes(severity, connector):
            enqueue(session, note_for(channel.name), channel.name, now, alert_id)
            written += 1
    return written


def claim(
    store: Store,
    instance: str,
    now: datetime,
    lease: timedelta,
    limit: int,
    per_channel: int | None = None,
) -> list[tuple[int, str, int, Notification]]:
    """Lease up to ``limit`` due messages to ``instance``, at most ``per_channel`` of each
    channel: (id, channel, attempts, note)."""
    free = or_(col(OutboxRow.claim_until).is_(None), col(OutboxRow.claim_until) < now)

    def work(session: Session) -> list[tuple[int, str, int, Notification]]:
        claimed: list[tuple[int, str, int, Notification]] = []
        due = session.scalars(
            select(OutboxRow)
            .where(col(OutboxRow.status) == "pending", col(OutboxRow.next_attempt_at) <= now)
            .where(free)
            .order_by(col(OutboxRow.id))
            .limit(limit)
        ).all()
        taken: dict[str, int] = {}
        for row in due:
            if per_channel is not None and taken.get(row.channel, 0) >= per_channel:
                continue
            taken[row.channel] = taken.get(row.channel, 0) + 1
            won = session.execute(
                update(OutboxRow)
                .where(col(OutboxRow.id) == row.id, col(OutboxRow.status) == "pending")
                .where(free)
                .values(claim_until=now + lease, claimed_by=instance)
                .execution_options(synchronize_session=False)
            )
            if cast(CursorResult[Any], won).rowcount == 1 and row.id is not None:
                claimed.append(
                    (row.id, row.channel, row.attempts, Notification.from_dict(row.payload))
                )
        return claimed

    return store.retrying("claiming outbox messages", work)


def finish(store: Store, message_id: int, instance: str, values: dict[str, Any]) -> None:
    """Record how a claimed message ended (only while ``instance`` still holds its lease)."""
    statement = (
        update(OutboxRow)
        .where(col(OutboxRow.id) == message_id, col(OutboxRow.claimed_by) == instance)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    store.retrying("recording a delivery", lambda session: session.execute(statement))
