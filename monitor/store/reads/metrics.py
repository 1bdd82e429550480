"""What a ``/metrics`` scrape reads: every address's newest observation (and, during a miss, the
last one that measured), their findings and leaf expiry, and the outbox by status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlmodel import col

from monitor.store import queries
from monitor.store.engine import Store
from monitor.store.models import FindingRow, ObservationRow, OutboxRow
from monitor.store.queries import Key


@dataclass(frozen=True)
class Scrape:
    """The stored state one scrape exports."""

    endpoints: dict[int, str]  # id -> name
    rows: list[ObservationRow]  # the newest per address and direction
    known: dict[Key, ObservationRow]  # the last that measured, where the newest did not
    findings: dict[int, list[FindingRow]]  # by observation id
    expiry: dict[str, datetime]  # leaf sha256 -> notAfter
    outbox: dict[str, int]  # status -> messages


def scrape(store: Store) -> Scrape:
    with store.reading("collecting metrics") as session:
        endpoints = {
            e.id: e.name for e in queries.endpoints_by_name(session).values() if e.id is not None
        }
        stored = queries.current(session, queries.latest_observations(session))
        expiry = queries.not_after(session, stored.leaves())
        outbox = {
            str(status): int(count)
            for status, count in session.execute(
                select(col(OutboxRow.status), func.count()).group_by(col(OutboxRow.status))
            ).all()
        }
    return Scrape(endpoints, stored.latest, stored.known, stored.findings, expiry, outbox)
