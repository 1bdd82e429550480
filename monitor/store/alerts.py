"""The alert rows a scan's tracking reads and writes inside the scan's transaction: the pending
and open alerts of the scanned endpoints, their new states, and the lock that keeps two
instances from tracking one endpoint at once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import select, text
from sqlmodel import Session, col

from checks.base import Severity
from monitor.alerts.lifecycle import AlertState
from monitor.store.models import AlertRow
from monitor.store.queries import Key

TRACKING_LOCK = 0x72637472  # the advisory lock space of alert tracking ("rctr")
BUCKETS = 64


def serialise(session: Session, endpoint_ids: Iterable[int]) -> None:
    """On PostgreSQL, wait until no other transaction is tracking these endpoints.

    Two instances judging one address at once (a daemon and ``relaycert scan``, two daemons
    while claims move) would otherwise both read "no open alert" and both open one, or both
    advance one alert's streak from the same value.  Transaction-scoped advisory locks, one per
    bucket of endpoint ids (a 20 000-endpoint scan takes at most :data:`BUCKETS`, well inside
    PostgreSQL's lock table), taken in ascending order before anything tracked is read: the
    second transaction then reads what the first committed.  SQLite has one writer at a time,
    and the scan has written before it tracks, so it is serialised already.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    for bucket in sorted({endpoint_id % BUCKETS for endpoint_id in endpoint_ids}):
        session.execute(
            text("SELECT pg_advisory_xact_lock(:space, :bucket)"),
            {"space": TRACKING_LOCK, "bucket": bucket},
        )


def pending_and_open(
    session: Session, endpoint_ids: Iterable[int]
) -> dict[Key, dict[str, AlertRow]]:
    """The pending and open alerts of these endpoints, per address, direction and rule."""
    rows: dict[Key, dict[str, AlertRow]] = defaultdict(dict)
    for row in session.scalars(
        select(AlertRow).where(
            col(AlertRow.endpoint_id).in_(list(set(endpoint_ids))),
            col(AlertRow.status).in_(["pending", "open"]),
        )
    ):
        rows[(row.endpoint_id, row.address, row.direction)][row.rule] = row
    return rows


def state(row: AlertRow) -> AlertState:
    """What the lifecycle is told of a stored alert."""
    return AlertState(
        row.rule,
        Severity(row.severity),
        row.status,
        row.streak,
        row.message,
        row.first_seen,
        row.id,
        row.opened_at,
        row.resolved_at,
        row.last_notified_at,
        row.transitions,
    )


def save(
    session: Session, key: Key, known: dict[str, AlertRow], states: list[AlertState]
) -> dict[str, AlertRow]:
    """Write the new states; the rows by rule, with their ids."""
    saved: dict[str, AlertRow] = {}
    for new in states:
        row = known.get(new.rule) or AlertRow(
            endpoint_id=key[0],
            address=key[1],
            direction=key[2],
            rule=new.rule,
            severity="",
            status="",
            message="",
            first_seen=new.first_seen,
        )
        row.severity, row.status, row.streak = new.severity.value, new.status, new.streak
        row.message, row.opened_at, row.resolved_at = new.message, new.opened_at, new.resolved_at
        row.last_notified_at, row.transitions = new.last_notified_at, new.transitions
        session.add(row)
        saved[new.rule] = row
    session.flush()
    return saved
