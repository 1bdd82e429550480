"""What a compliance report reads over its period, in one read transaction: each address's
newest observation (and the last that measured, where the newest did not) with its findings and
leaf, the period's probe counters, its certificate changes, drift findings and alert
transitions, and the daily chart's figures.  Plain rows: the report labels and lays them out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from cryptography import x509
from sqlalchemy import case, func, select
from sqlmodel import Session, col

from checks.base import Direction
from monitor.store import queries, renewals
from monitor.store.engine import Store
from monitor.store.models import AlertRow, EndpointRow, FindingRow, ObservationRow, ProbeDayRow
from monitor.store.queries import Key
from monitor.store.reads.outbound import MEASURED_OUTBOUND

SERVED = Direction.FROM_EXO.value


@dataclass(frozen=True)
class Change:
    """An address's leaf that differs from its previous one (``old``, ``new``: sha256)."""

    key: Key
    at: datetime
    old: str
    new: str
    old_cert: x509.Certificate | None
    new_cert: x509.Certificate | None
    by_relaycert: bool  # deployed and verified by relaycert's own renewal


@dataclass(frozen=True)
class Drift:
    """A drift finding of the period, each (address, rule, message) once."""

    key: Key
    at: datetime
    rule: str
    message: str


@dataclass(frozen=True)
class Period:
    """Everything the report reads of its endpoints over its period."""

    endpoints: dict[int, EndpointRow]
    latest: list[ObservationRow]
    known: dict[Key, ObservationRow]
    findings: dict[int, list[FindingRow]]  # by observation id
    leaves: dict[str, x509.Certificate]  # by sha256
    counts: dict[Key, tuple[int, int]]  # probes (or outbound checks) run, and succeeded
    changes: list[Change]
    drift: list[Drift]
    alerts: list[AlertRow]  # every alert of the endpoints (the period's transitions among them)
    start: datetime
    end: datetime


def period(store: Store, endpoint_names: Iterable[str], start: datetime, end: datetime) -> Period:
    """The named endpoints' addresses and events between ``start`` and ``end``."""
    with store.reading("reading the report data") as session:
        endpoints = queries.endpoints_by_name(session, endpoint_names)
        by_id = {e.id: e for e in endpoints.values() if e.id is not None}
        ids = list(by_id)
        stored = queries.current(session, queries.latest_observations(session, ids))
        latest, known, findings = stored.latest, stored.known, stored.findings
        leaves = queries.certificates(session, stored.leaves())
        counts = _probe_days(session, start, end)
        counts.update(_outbound_days(session, ids, start, end))
        return Period(
            by_id,
            latest,
            known,
            findings,
            leaves,
            counts,
            _certificate_changes(session, ids, start, end),
            _drift(session, ids, start, end),
            list(session.scalars(select(AlertRow).where(col(AlertRow.endpoint_id).in_(ids)))),
            start,
            end,
        )


def _probe_days(
    session: Session, start: datetime, end: datetime
) -> dict[tuple[int, str, str], tuple[int, int]]:
    """Probes attempted and succeeded per address over the period, summed by the database
    (2000 addresses x 90 days are 180 000 counter rows: never load them one by one)."""
    d = ProbeDayRow
    query = (
        select(
            col(d.endpoint_id),
            col(d.address),
            func.sum(col(d.attempts)),
            func.sum(col(d.successes)),
        )
        .where(col(d.day) >= start.date(), col(d.day) <= end.date())
        .group_by(col(d.endpoint_id), col(d.address))
    )
    return {(e, a, SERVED): (int(n or 0), int(ok or 0)) for e, a, n, ok in session.execute(query)}


def _outbound_days(
    session: Session, endpoint_ids: list[int], start: datetime, end: datetime
) -> dict[tuple[int, str, str], tuple[int, int]]:
    """Outbound checks run and arrived per address over the period, from the stored results
    (each row counts its repeats)."""
    o = ObservationRow
    arrived = case((col(o.status).in_(MEASURED_OUTBOUND), col(o.repeats)), else_=0)
    query = (
        select(col(o.endpoint_id), col(o.address), func.sum(col(o.repeats)), func.sum(arrived))
        .where(
            col(o.endpoint_id).in_(endpoint_ids),
            col(o.direction) == Direction.TO_EXO.value,
            col(o.started_at) >= start,
            col(o.started_at) <= end,
        )
        .group_by(col(o.endpoint_id), col(o.address))
    )
    return {
        (e, a, Direction.TO_EXO.value): (int(n or 0), int(ok or 0))
        for e, a, n, ok in session.execute(query)
    }


def _certificate_changes(
    session: Session, endpoint_ids: list[int], start: datetime, end: datetime
) -> list[Change]:
    """A leaf that differs from the address's previous one (including the last before the
    period)."""
    o = ObservationRow
    before = queries.newest_ids(endpoint_ids, before=start)
    # The database pairs each row with the address's previous leaf (a window function, in
    # SQLite and PostgreSQL alike) and returns only the rows where the leaf changed.
    ordered = (
        select(
            col(o.endpoint_id).label("endpoint_id"),
            col(o.address).label("address"),
            col(o.direction).label("direction"),
            col(o.started_at).label("started_at"),
            col(o.leaf_sha256).label("leaf"),
            func.lag(col(o.leaf_sha256))
            .over(
                partition_by=(col(o.endpoint_id), col(o.address), col(o.direction)),
                order_by=col(o.id),
            )
            .label("previous"),
        )
        .where(col(o.endpoint_id).in_(endpoint_ids), col(o.started_at) <= end)
        .where(col(o.leaf_sha256).is_not(None))
        .where((col(o.started_at) >= start) | col(o.id).in_(before))
        .subquery()
    )
    rows = session.execute(
        select(ordered).where(
            ordered.c.previous.is_not(None),
            ordered.c.previous != ordered.c.leaf,
            ordered.c.started_at >= start,
        )
    ).all()
    changes: list[tuple[Key, datetime, str, str]] = [
        ((r.endpoint_id, r.address, r.direction), r.started_at, r.previous, r.leaf) for r in rows
    ]
    certs = queries.certificates(session, {sha for *_, a, b in changes for sha in (a, b)})
    renewed = renewals.renewed_by_relaycert(session, {new for *_, new in changes})
    return [
        Change(key, at, old, new, certs.get(old), certs.get(new), new in renewed)
        for key, at, old, new in changes
    ]


def _drift(
    session: Session, endpoint_ids: list[int], start: datetime, end: datetime
) -> list[Drift]:
    """Drift findings of the period, each listed once: the same finding seen again after an
    outage (a new row with the same drift) is not a new event."""
    o = ObservationRow
    seen: set[tuple[Key, str, str]] = set()
    found = []
    for finding, endpoint_id, address, direction, started in session.execute(
        select(FindingRow, col(o.endpoint_id), col(o.address), col(o.direction), col(o.started_at))
        .join(o, col(o.id) == col(FindingRow.observation_id))
        .where(
            col(o.endpoint_id).in_(endpoint_ids),
            col(o.started_at) >= start,
            col(o.started_at) <= end,
            col(FindingRow.rule).startswith("drift."),
        )
        .order_by(col(o.id))
    ):
        key = (endpoint_id, address, direction)
        if (key, finding.rule, finding.message) not in seen:
            seen.add((key, finding.rule, finding.message))
            found.append(Drift(key, started, finding.rule, finding.message))
    return found


@dataclass(frozen=True)
class Daily:
    """The daily chart's figures: probes per day, critical alerts that overlap the period, and
    how many addresses the store knows (the denominator of a day's compliance)."""

    counts: dict[date, tuple[int, int]]  # day -> (attempted, succeeded)
    critical: list[tuple[Key, datetime | None, datetime | None]]  # (address, opened, resolved)
    addresses: int


def daily(store: Store, start: datetime, end: datetime) -> Daily:
    """Summed by the database."""
    d, a, o = ProbeDayRow, AlertRow, ObservationRow
    with store.reading("reading the daily figures") as session:
        counts = {
            day: (int(n or 0), int(ok or 0))
            for day, n, ok in session.execute(
                select(col(d.day), func.sum(col(d.attempts)), func.sum(col(d.successes)))
                .where(col(d.day) >= start.date(), col(d.day) <= end.date())
                .group_by(col(d.day))
            )
        }
        critical = [
            ((e, address, direction), opened, resolved)
            for e, address, direction, opened, resolved in session.execute(
                select(
                    col(a.endpoint_id),
                    col(a.address),
                    col(a.direction),
                    col(a.opened_at),
                    col(a.resolved_at),
                ).where(
                    col(a.severity) == "critical",
                    col(a.opened_at).is_not(None),
                    col(a.opened_at) <= end,
                    (col(a.resolved_at).is_(None)) | (col(a.resolved_at) >= start),
                )
            )
        ]
        total = session.execute(
            select(func.count()).select_from(
                select(col(o.endpoint_id), col(o.address))
                .where(col(o.started_at) <= end)
                .distinct()
                .subquery()
            )
        ).scalar_one()
    return Daily(counts, critical, int(total or 0))
