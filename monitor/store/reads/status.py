"""What the daemon's status page and health check read."""

from __future__ import annotations

from sqlalchemy import select, text
from sqlmodel import col

from monitor.store.engine import Store
from monitor.store.models import AlertRow, EndpointRow

OPEN_ALERTS_SHOWN = 500


def open_alerts(store: Store) -> list[tuple[str, AlertRow]]:
    """The open alerts (at most :data:`OPEN_ALERTS_SHOWN`), each with its endpoint's name."""
    with store.reading("reading open alerts") as session:
        names = dict(session.execute(select(col(EndpointRow.id), col(EndpointRow.name))).all())
        rows = session.scalars(
            select(AlertRow).where(col(AlertRow.status) == "open").limit(OPEN_ALERTS_SHOWN)
        ).all()
        return [(str(names.get(row.endpoint_id, "?")), row) for row in rows]


def ping(store: Store) -> None:
    """One round trip to the database (raises :class:`StoreError` when it cannot)."""
    with store.reading("health check") as session:
        session.execute(text("SELECT 1"))
