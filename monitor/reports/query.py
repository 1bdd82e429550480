"""The report's reads, in one read transaction of the store: each address's newest observation
with its findings and leaf, the period's probe counters, and the period's events (renewals,
drift findings, alert transitions).  Reports never probe."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import case, func, select
from sqlmodel import Session, col

from checks.base import Direction
from checks.certinfo import all_names
from monitor.reports.model import Event
from monitor.store import queries, renewals
from monitor.store.engine import Store
from monitor.store.models import AlertRow, EndpointRow, FindingRow, ObservationRow, ProbeDayRow
from monitor.store.outbound import MEASURED_OUTBOUND
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
    # When the newest observation measured nothing (an outage, a probe that never arrived; for
    # the listener, any newest without a certificate), the last one that did: its certificate
    # and findings still count, marked "last seen".
    last_seen: datetime | None = None
    last_findings: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def measured(self) -> bool:
        """Did the newest probe measure anything (not unreachable, not a probe that never
        arrived)?"""
        return self.observation.status not in queries.MISSES


def read(
    store: Store, endpoint_names: Iterable[str], start: datetime, end: datetime
) -> list[AddressRow]:
    """Every address of the named endpoints, with what the report needs of it."""
    with store.reading("reading the report data") as session:
        endpoints = queries.endpoints_by_name(session, endpoint_names)
        by_id = {e.id: e for e in endpoints.values() if e.id is not None}
        latest = queries.latest_observations(session, list(by_id))
        known = queries.last_known(session, latest)
        ids = [o.id for o in latest] + [o.id for o in known.values()]
        findings = queries.findings_of(session, ids)
        shas = {o.leaf_sha256 for o in [*latest, *known.values()] if o.leaf_sha256}
        leaves = queries.certificates(session, shas)
        days = _probe_days(session, start, end)
        days.update(_outbound_days(session, list(by_id), start, end))
        events = _events(session, list(by_id), start, end)
    rows = []
    for obs in latest:
        key = (obs.endpoint_id, obs.address, obs.direction)
        last = known.get(key)
        rows.append(
            AddressRow(
                by_id[obs.endpoint_id],
                obs,
                [(f.severity, f.rule, f.message) for f in findings.get(obs.id or 0, [])],
                leaves.get((last or obs).leaf_sha256 or ""),
                events.get(key, []),
                *days.get((obs.endpoint_id, obs.address, obs.direction), (0, 0)),
                (last.last_seen_at or last.started_at) if last else None,
                [(f.severity, f.rule, f.message) for f in findings.get(last.id or 0, [])]
                if last
                else [],
            )
        )
    return rows


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
    period) is an event, labelled by what changed."""
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
    for key, started, old, new in changes:
        kind, text = change_label(certs.get(old), certs.get(new), new in renewed)
        events[key].append(Event(started, kind, f"{text}: {old[:16]}... replaced by {new[:16]}..."))


def change_label(
    old: x509.Certificate | None, new: x509.Certificate | None, by_relaycert: bool = False
) -> tuple[str, str]:
    """What a certificate change was: a renewal (same names and issuer, or one relaycert
    deployed and verified itself, whatever intermediate the CA chose), or what differs."""
    if old is None or new is None:
        return "certificate_changed", "certificate changed (unknown certificate)"
    if by_relaycert:
        issuer = "" if old.issuer == new.issuer else f"; new issuer {new.issuer.rfc4514_string()}"
        return "renewal", f"renewed by relaycert (deployed and verified{issuer})"
    if sorted(all_names(old)) != sorted(all_names(new)):
        return "names_changed", (
            f"names changed ({', '.join(all_names(old)) or 'none'} to "
            f"{', '.join(all_names(new)) or 'none'})"
        )
    if old.issuer != new.issuer:
        return "issuer_changed", f"issuer changed (now {new.issuer.rfc4514_string()})"
    if old.public_key().public_bytes(*_SPKI) == new.public_key().public_bytes(*_SPKI):
        return "renewal", "renewal (same names, issuer and key)"
    return "renewal", "renewal (same names and issuer, new key)"


_SPKI = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _drift(
    session: Session, endpoint_ids: list[int], start: datetime, end: datetime, events: Events
) -> None:
    """Drift findings of the period, each listed once: the same finding seen again after an
    outage (a new row with the same drift) is not a new event."""
    o = ObservationRow
    seen: set[tuple[Key, str, str]] = set()
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
        if (key, finding.rule, finding.message) in seen:
            continue
        seen.add((key, finding.rule, finding.message))
        text = f"{finding.rule}: {finding.message}"
        events[key].append(Event(started, "drift", text))


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
