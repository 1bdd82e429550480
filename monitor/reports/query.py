"""The report's data: what the store read over the period (:mod:`monitor.store.reads.reports`,
one read transaction) made into one row per address with its events (renewals, drift findings,
alert transitions).  Reports never probe."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from checks.certinfo import all_names
from monitor.reports.model import Event
from monitor.store import queries
from monitor.store.engine import Store
from monitor.store.models import EndpointRow, ObservationRow
from monitor.store.queries import Key
from monitor.store.reads import reports
from monitor.store.reads.reports import Period


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
    stored = reports.period(store, endpoint_names, start, end)
    findings, leaves, known = stored.findings, stored.leaves, stored.known
    events = _events(stored)
    rows = []
    for obs in stored.latest:
        key = (obs.endpoint_id, obs.address, obs.direction)
        last = known.get(key)
        rows.append(
            AddressRow(
                stored.endpoints[obs.endpoint_id],
                obs,
                [(f.severity, f.rule, f.message) for f in findings.get(obs.id or 0, [])],
                leaves.get((last or obs).leaf_sha256 or ""),
                events.get(key, []),
                *stored.counts.get(key, (0, 0)),
                (last.last_seen_at or last.started_at) if last else None,
                [(f.severity, f.rule, f.message) for f in findings.get(last.id or 0, [])]
                if last
                else [],
            )
        )
    return rows


Events = dict[Key, list[Event]]


def _events(stored: Period) -> Events:
    """Renewals and other certificate changes, drift findings and alert transitions of the
    period, per address and direction, in time order."""
    start, end = stored.start, stored.end
    events: Events = defaultdict(list)
    for change in stored.changes:
        kind, text = change_label(change.old_cert, change.new_cert, change.by_relaycert)
        line = f"{text}: {change.old[:16]}... replaced by {change.new[:16]}..."
        events[change.key].append(Event(change.at, kind, line))
    for drift in stored.drift:
        events[drift.key].append(Event(drift.at, "drift", f"{drift.rule}: {drift.message}"))
    for alert in stored.alerts:
        key = (alert.endpoint_id, alert.address, alert.direction)
        if alert.opened_at and start <= alert.opened_at <= end:
            text = f"{alert.severity} alert {alert.rule} opened"
            events[key].append(Event(alert.opened_at, "alert_opened", text))
        if alert.resolved_at and alert.opened_at and start <= alert.resolved_at <= end:
            text = f"alert {alert.rule} resolved"
            events[key].append(Event(alert.resolved_at, "alert_resolved", text))
    for items in events.values():
        items.sort(key=lambda e: e.at)
    return events


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
