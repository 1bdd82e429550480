"""The report's reads, in one read transaction of the store: each address's newest observation
with its findings and leaf, the period's probe counters, and the period's events (renewals,
drift findings, alert transitions).  Reports never probe."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from sqlalchemy import select
from sqlmodel import Session, col

from checks.base import Direction
from monitor.reports.model import Event
from monitor.store import queries
from monitor.store.engine import Store
from monitor.store.models import AlertRow, EndpointRow, FindingRow, ObservationRow, ProbeDayRow
from monitor.store.queries import Key

SERVED = Direction.FROM_EXO.value


@dataclass(frozen=True)
class AddressRow:
    """One address as the store knows it."""

    endpoint: EndpointRow
    observation: ObservationRow
    findings: list[tuple[str, str, str]]  # severity, rule, message
    leaf: x509.Certificate | None
    events: list[Event]
    attempts: int
    successes: int


def read(
    store: Store, endpoint_names: Iterable[str], start: datetime, end: datetime
) -> list[AddressRow]:
    """Every address of the named endpoints, with what the report needs of it."""
    with store.reading("reading the report data") as session:
        endpoints = queries.endpoints_by_name(session, endpoint_names)
        by_id = {e.id: e for e in endpoints.values() if e.id is not None}
        latest = queries.latest_observations(session, list(by_id))
        findings = queries.findings_of(session, [o.id for o in latest])
        leaves = queries.certificates(session, {o.leaf_sha256 for o in latest if o.leaf_sha256})
        days = _probe_days(session, start, end)
        events = _events(session, list(by_id), start, end)
    return [
        AddressRow(
            by_id[obs.endpoint_id],
            obs,
            [(f.severity, f.rule, f.message) for f in findings.get(obs.id or 0, [])],
            leaves.get(obs.leaf_sha256 or ""),
            events.get((obs.endpoint_id, obs.address, obs.direction), []),
            *days.get((obs.endpoint_id, obs.address), (0, 0))
            if obs.direction == SERVED
            else (0, 0),
        )
        for obs in latest
    ]


def _probe_days(
    session: Session, start: datetime, end: datetime
) -> dict[tuple[int, str], tuple[int, int]]:
    counts: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])
    for day in session.scalars(
        select(ProbeDayRow).where(
            col(ProbeDayRow.day) >= start.date(), col(ProbeDayRow.day) <= end.date()
        )
    ):
        counts[(day.endpoint_id, day.address)][0] += day.attempts
        counts[(day.endpoint_id, day.address)][1] += day.successes
    return {key: (n[0], n[1]) for key, n in counts.items()}


def _events(session: Session, endpoint_ids: list[int], start: datetime, end: datetime) -> Events:
    """Renewals, drift findings and alert transitions of the period, per address and direction
    (batched)."""
    events: Events = defaultdict(list)
    _certificate_changes(session, endpoint_ids, start, end, events)
    _drift(session, endpoint_ids, start, end, events)
    _alerts(session, endpoint_ids, start, end, events)
    for items in events.values():
        items.sort(key=lambda e: e.at)
    return events


Events = dict[Key, list[Event]]


def _certificate_changes(
    session: Session, endpoint_ids: list[int], start: datetime, end: datetime, events: Events
) -> None:
    """A leaf that differs from the address's previous one (including the last before the
    period) is a renewal event."""
    o = ObservationRow
    before = queries.newest_ids(endpoint_ids, before=start)
    rows = session.execute(
        select(
            col(o.endpoint_id),
            col(o.address),
            col(o.direction),
            col(o.started_at),
            col(o.leaf_sha256),
        )
        .where(col(o.endpoint_id).in_(endpoint_ids), col(o.started_at) <= end)
        .where((col(o.started_at) >= start) | col(o.id).in_(before))
        .order_by(col(o.id))
    ).all()
    previous: dict[Key, str] = {}
    for endpoint_id, address, direction, started, leaf in rows:
        key = (endpoint_id, address, direction)
        known = previous.get(key)
        if leaf and known and leaf != known and started >= start:
            text = f"certificate {known[:16]}... replaced by {leaf[:16]}..."
            events[key].append(Event(started, "renewal", text))
        if leaf:
            previous[key] = leaf


def _drift(
    session: Session, endpoint_ids: list[int], start: datetime, end: datetime, events: Events
) -> None:
    o = ObservationRow
    for finding, endpoint_id, address, direction, started in session.execute(
        select(FindingRow, col(o.endpoint_id), col(o.address), col(o.direction), col(o.started_at))
        .join(o, col(o.id) == col(FindingRow.observation_id))
        .where(
            col(o.endpoint_id).in_(endpoint_ids),
            col(o.started_at) >= start,
            col(o.started_at) <= end,
            col(FindingRow.rule).startswith("drift."),
        )
    ):
        text = f"{finding.rule}: {finding.message}"
        events[(endpoint_id, address, direction)].append(Event(started, "drift", text))


def _alerts(
    session: Session, endpoint_ids: list[int], start: datetime, end: datetime, events: Events
) -> None:
    for alert in session.scalars(
        select(AlertRow).where(col(AlertRow.endpoint_id).in_(endpoint_ids))
    ):
        key = (alert.endpoint_id, alert.address, alert.direction)
        if alert.opened_at and start <= alert.opened_at <= end:
            text = f"{alert.severity} alert {alert.rule} opened"
            events[key].append(Event(alert.opened_at, "alert_opened", text))
        if alert.resolved_at and alert.opened_at and start <= alert.resolved_at <= end:
            text = f"alert {alert.rule} resolved"
            events[key].append(Event(alert.resolved_at, "alert_resolved", text))
