"""What renewal reads: the recorded attempts (``relaycert status``, the metrics and the report
read them too), and the served certificate a renewal decides by."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from sqlalchemy import select
from sqlmodel import col

from monitor.store.engine import Store
from monitor.store.models import RenewalRow
from monitor.store.queries import certificates, endpoints_by_name, findings_of, latest_observations


@dataclass(frozen=True)
class RenewalStatus:
    name: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    detail: str | None
    old_sha256: str | None
    new_sha256: str | None


def renewals(
    store: Store, since: datetime | None = None, limit: int = 20, name: str | None = None
) -> list[RenewalStatus]:
    """Recent renewal attempts (of one renewal, or all), newest first."""
    query = select(RenewalRow).order_by(col(RenewalRow.id).desc()).limit(limit)
    if since is not None:
        query = query.where(col(RenewalRow.started_at) >= since)
    if name is not None:
        query = query.where(col(RenewalRow.name) == name)
    with store.reading("reading renewal attempts") as session:
        return [
            RenewalStatus(
                r.name, r.started_at, r.finished_at, r.outcome, r.detail, r.old_sha256, r.new_sha256
            )
            for r in session.scalars(query)
        ]


@dataclass(frozen=True)
class Served:
    """What some endpoints were last seen serving: the leaf with the least time left on any of
    their addresses (the node a renewal must fix first), the critical findings among ``rules``,
    and when the oldest of those observations was last confirmed."""

    leaf: x509.Certificate | None
    urgent: list[str]
    seen_at: datetime | None = None


def served(store: Store, endpoint_names: Iterable[str], rules: Collection[str]) -> Served:
    with store.reading("reading what the endpoints serve") as session:
        ids = [r.id for r in endpoints_by_name(session, endpoint_names).values() if r.id]
        rows = [
            r for r in latest_observations(session, ids) if r.direction == "from_exchange_online"
        ]
        urgent = sorted(
            {
                f.rule
                for found in findings_of(session, [r.id for r in rows]).values()
                for f in found
                if f.rule in rules and f.severity == "critical"
            }
        )
        leaves = certificates(session, {r.leaf_sha256 for r in rows if r.leaf_sha256})
    worst = min(leaves.values(), key=lambda c: c.not_valid_after_utc, default=None)
    seen = [r.last_seen_at or r.started_at for r in rows]
    return Served(worst, urgent, min(seen) if seen else None)
