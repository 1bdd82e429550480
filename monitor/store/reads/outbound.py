"""The outbound checks' history: consecutive misses, and the state a late arrival is judged
against (which address its endpoint's results are keyed by, when a probe last arrived)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import select
from sqlmodel import col

from monitor.store.engine import Store
from monitor.store.models import ObservationRow
from monitor.store.queries import endpoints_by_name


def outbound_misses(store: Store | None, names: Collection[str], limit: int) -> dict[str, int]:
    """Consecutive outbound checks that never arrived, newest first, per endpoint name (at most
    ``limit``): the stored rows count their repeats."""
    if store is None or not names:
        return {}
    o = ObservationRow
    found: dict[str, int] = {}
    with store.reading("reading outbound misses") as session:
        for name, row in endpoints_by_name(session, names).items():
            query = (
                select(col(o.status), col(o.repeats))
                .where(col(o.endpoint_id) == row.id, col(o.direction) == "to_exchange_online")
                .order_by(col(o.id).desc())
                .limit(limit)
            )
            count = 0
            for status, repeats in session.execute(query):
                if status != "not_delivered":
                    break
                count += repeats
            found[name] = min(count, limit)
    return found


MEASURED_OUTBOUND = ("ok", "no_client_cert", "no_tls")  # statuses where a probe arrived


def outbound_state(
    store: Store | None, name: str
) -> tuple[str | None, datetime | None, datetime | None]:
    """For endpoint ``name``'s outbound checks: the address of the newest result (the key its
    results and alerts are stored under), when the newest *arrived* probe was checked, and
    when the newest check of any outcome (a miss too) was."""
    if store is None:
        return None, None, None
    o = ObservationRow
    with store.reading("reading the outbound state") as session:
        row = endpoints_by_name(session, [name]).get(name)
        if row is None:
            return None, None, None
        mine = (col(o.endpoint_id) == row.id, col(o.direction) == "to_exchange_online")
        newest = session.execute(
            select(col(o.address), col(o.started_at), col(o.last_seen_at))
            .where(*mine)
            .order_by(col(o.id).desc())
            .limit(1)
        ).first()
        measured = session.execute(
            select(col(o.started_at), col(o.last_seen_at))
            .where(*mine, col(o.status).in_(MEASURED_OUTBOUND))
            .order_by(col(o.id).desc())
            .limit(1)
        ).first()
        return (
            newest[0] if newest else None,
            (measured[1] or measured[0]) if measured else None,
            (newest[2] or newest[1]) if newest else None,
        )
