"""Gather a compliance report from the store.  Reports are built from stored data only: they
never probe.  Everything here is plain data, rendered by :mod:`monitor.reports.render`."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from sqlalchemy import func, select
from sqlmodel import Session, col

from checks.base import Severity, anchor
from checks.matching import base_domain, registered_domain
from monitor.certview import CertInfo, cert_info
from monitor.config.loader import Config
from monitor.store.engine import Store
from monitor.store.models import (
    AlertRow,
    CertificateRow,
    EndpointRow,
    FindingRow,
    ObservationRow,
    ProbeDayRow,
)
from monitor.store.queries import renewals

VERDICTS = ("compliant", "at risk", "non-compliant")
ATTR36 = "550 5.7.64 TenantAttribution; Relay Access Denied ATTR36"
UNTRUSTED = "450 4.4.317 Cannot connect to remote server [Message=UntrustedRoot]"
SCENARIOS = (
    (
        "ndr",
        "Relaying NDRs to Internet recipients",
        "Non-delivery reports from on-premises to external senders relay through Microsoft 365.",
    ),
    (
        "foreign",
        "Sending as domains not registered in the tenant",
        "On-premises servers send as a domain the tenant does not own (e.g. a partner's).",
    ),
    (
        "forwarded",
        "Relaying messages forwarded by on-premises rules",
        "Mail forwarded to external recipients keeps an external sender and recipient.",
    ),
)
# Findings that make Exchange Online refuse the certificate-based attribution, with its error.
BREAKING = {
    "connector.domain_not_registered": ATTR36,
    "connector.name_not_covered": ATTR36,
    "cert.untrusted": UNTRUSTED,
    "cert.expired": UNTRUSTED,
    "cert.not_yet_valid": UNTRUSTED,
    "cert.weak_signature": UNTRUSTED,
    "tls.starttls_missing": ATTR36,
    "tls.handshake_failed": ATTR36,
    "tls.protocol_outdated": ATTR36,
}


@dataclass(frozen=True)
class Event:
    at: datetime
    kind: str  # renewal | drift | alert_opened | alert_resolved
    text: str


@dataclass
class AddressReport:
    endpoint: str
    host: str
    port: int
    address: str
    connector: str | None
    status: str
    last_probe: datetime | None
    tls_version: str | None
    certificate: CertInfo | None
    findings: list[tuple[str, str, str]]  # severity, rule, message
    events: list[Event] = field(default_factory=list)
    attempts: int = 0
    successes: int = 0

    @property
    def worst(self) -> str | None:
        ranks = [Severity(s) for s, _, _ in self.findings]
        top = max(ranks, key=lambda s: s.rank, default=None)
        return top.value if top else None

    @property
    def availability(self) -> float | None:
        return round(100 * self.successes / self.attempts, 2) if self.attempts else None


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    description: str
    works: bool | None  # None: unknown (no successful probe)
    evidence: str
    error: str | None
    fix: str | None


@dataclass
class ConnectorReport:
    name: str
    value: str
    domain: str
    accepted_domain: str | None
    verdict: str
    scenarios: list[Scenario]
    endpoints: list[str]


@dataclass
class Report:
    tenant: str
    period_start: datetime
    period_end: datetime
    generated_at: datetime
    verdict: str
    counts: dict[str, int]
    connectors: list[ConnectorReport]
    addresses: list[AddressReport]
    timeline: list[tuple[str, CertInfo]]  # label, certificate
    upcoming: list[tuple[str, CertInfo]]  # expiring within 90 days
    renewals: list[dict[str, object]] = field(default_factory=list)  # ACME attempts in period


def _verdict(severities: list[str]) -> str:
    ranks = {Severity(s).rank for s in severities}
    if Severity.CRITICAL.rank in ranks:
        return "non-compliant"
    if ranks & {Severity.WARNING.rank, Severity.UNKNOWN.rank}:
        return "at risk"
    return "compliant"


def _scenarios(addresses: list[AddressReport], accepted: str | None) -> list[Scenario]:
    broken = [
        (a, rule, msg)
        for a in addresses
        for sev, rule, msg in a.findings
        if rule in BREAKING and sev == "critical"
    ]
    probed_ok = [a for a in addresses if a.certificate is not None]
    if accepted is None:
        works: bool | None = False
        evidence = "the connector's domain is not an accepted domain of the tenant"
        error: str | None = ATTR36
        fix: str | None = "Add the domain as an accepted domain, or change the connector."
    elif broken:
        address, rule, message = broken[0]
        works, error = False, BREAKING[rule]
        evidence = f"{address.endpoint} ({address.address}): {rule}: {message}"
        fix = f"See docs/rules.md#{anchor(rule)}."
    elif not probed_ok:
        works, error, fix = None, None, "Make the endpoints reachable by the monitor."
        evidence = "no endpoint of this connector was probed successfully"
    else:
        works, error, fix = True, None, None
        evidence = "; ".join(
            f"{a.endpoint} ({a.address}) presents {a.certificate.subject}"  # type: ignore[union-attr]
            for a in probed_ok[:5]
        )
    return [
        Scenario(key, title, text, works, evidence, error, fix) for key, title, text in SCENARIOS
    ]


def _events(
    session: Session, endpoint_ids: list[int], start: datetime, end: datetime
) -> dict[tuple[int, str], list[Event]]:
    """Renewals, drift findings and alert transitions of the period, per address (batched)."""
    events: dict[tuple[int, str], list[Event]] = defaultdict(list)
    o = ObservationRow
    before = (
        select(func.max(o.id))
        .where(col(o.endpoint_id).in_(endpoint_ids), col(o.started_at) < start)
        .group_by(col(o.endpoint_id), col(o.address))
    )
    rows = session.execute(
        select(col(o.endpoint_id), col(o.address), col(o.started_at), col(o.leaf_sha256))
        .where(col(o.endpoint_id).in_(endpoint_ids), col(o.started_at) <= end)
        .where((col(o.started_at) >= start) | col(o.id).in_(before))
        .order_by(col(o.id))
    ).all()
    previous: dict[tuple[int, str], str] = {}
    for endpoint_id, address, started, leaf in rows:
        key = (endpoint_id, address)
        known = previous.get(key)
        if leaf and known and leaf != known and started >= start:
            events[key].append(
                Event(started, "renewal", f"certificate {known[:16]}... replaced by {leaf[:16]}...")
            )
        if leaf:
            previous[key] = leaf
    for finding, endpoint_id, address, started in session.execute(
        select(FindingRow, col(o.endpoint_id), col(o.address), col(o.started_at))
        .join(o, col(o.id) == col(FindingRow.observation_id))
        .where(
            col(o.endpoint_id).in_(endpoint_ids),
            col(o.started_at) >= start,
            col(o.started_at) <= end,
            col(FindingRow.rule).startswith("drift."),
        )
    ):
        events[(endpoint_id, address)].append(
            Event(started, "drift", f"{finding.rule}: {finding.message}")
        )
    for alert in session.scalars(
        select(AlertRow).where(col(AlertRow.endpoint_id).in_(endpoint_ids))
    ):
        key = (alert.endpoint_id, alert.address)
        if alert.opened_at and start <= alert.opened_at <= end:
            events[key].append(
                Event(
                    alert.opened_at, "alert_opened", f"{alert.severity} alert {alert.rule} opened"
                )
            )
        if alert.resolved_at and alert.opened_at and start <= alert.resolved_at <= end:
            events[key].append(
                Event(alert.resolved_at, "alert_resolved", f"alert {alert.rule} resolved")
            )
    for items in events.values():
        items.sort(key=lambda e: e.at)
    return events


def build(config: Config, store: Store, period: timedelta, now: datetime) -> Report:
    start = now - period
    addresses: list[AddressReport] = []
    certs: dict[str, x509.Certificate] = {}
    with store.session() as session:
        endpoints = {e.name: e for e in session.scalars(select(EndpointRow))}
        ids = [e.id for name, e in endpoints.items() if config.endpoint(name) is not None]
        newest = (
            select(func.max(ObservationRow.id))
            .where(col(ObservationRow.endpoint_id).in_(ids))
            .group_by(col(ObservationRow.endpoint_id), col(ObservationRow.address))
        )
        latest = list(
            session.scalars(select(ObservationRow).where(col(ObservationRow.id).in_(newest)))
        )
        findings: dict[int, list[tuple[str, str, str]]] = defaultdict(list)
        for f in session.scalars(
            select(FindingRow).where(col(FindingRow.observation_id).in_([o.id for o in latest]))
        ):
            findings[f.observation_id].append((f.severity, f.rule, f.message))
        days: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])
        for day in session.scalars(
            select(ProbeDayRow).where(
                col(ProbeDayRow.day) >= start.date(), col(ProbeDayRow.day) <= now.date()
            )
        ):
            days[(day.endpoint_id, day.address)][0] += day.attempts
            days[(day.endpoint_id, day.address)][1] += day.successes
        leaves = {o.leaf_sha256 for o in latest if o.leaf_sha256}
        for row in session.scalars(
            select(CertificateRow).where(col(CertificateRow.sha256).in_(leaves))
        ):
            certs[row.sha256] = x509.load_der_x509_certificate(row.der)
        by_id = {e.id: e for e in endpoints.values()}
        events = _events(session, [i for i in ids if i is not None], start, now)
        for obs in latest:
            endpoint = by_id[obs.endpoint_id]
            cert = certs.get(obs.leaf_sha256 or "")
            attempts, successes = days[(obs.endpoint_id, obs.address)]
            addresses.append(
                AddressReport(
                    endpoint.name,
                    endpoint.host,
                    endpoint.port,
                    obs.address,
                    endpoint.connector,
                    obs.status,
                    obs.last_seen_at or obs.started_at,
                    obs.tls_version,
                    cert_info(cert, now) if cert else None,
                    sorted(findings[obs.id or 0], key=lambda f: -Severity(f[0]).rank),
                    events.get((obs.endpoint_id, obs.address), []),
                    attempts,
                    successes,
                )
            )
    addresses.sort(key=lambda a: (a.endpoint, a.address))
    connector_reports = []
    for connector in config.connectors:
        served = [a for a in addresses if a.connector == connector.name]
        domain = base_domain(connector.tls_sender_certificate_name)
        accepted = registered_domain(domain, config.tenant.accepted_domains)
        scenarios = _scenarios(served, accepted)
        severities = [s for a in served for s, _, _ in a.findings]
        verdict = _verdict(severities) if accepted else "non-compliant"
        connector_reports.append(
            ConnectorReport(
                connector.name,
                connector.tls_sender_certificate_name,
                domain,
                accepted,
                verdict,
                scenarios,
                sorted({a.endpoint for a in served}),
            )
        )
    all_severities = [s for a in addresses for s, _, _ in a.findings]
    counts = {s.value: all_severities.count(s.value) for s in Severity}
    timeline: dict[str, tuple[str, CertInfo]] = {}
    for a in addresses:
        if a.certificate is not None:
            timeline.setdefault(a.certificate.sha256, (a.endpoint, a.certificate))
    items = sorted(timeline.values(), key=lambda item: item[1].not_after)
    upcoming = [i for i in items if i[1].days_left <= 90]
    verdicts = [c.verdict for c in connector_reports] + [_verdict(all_severities)]
    overall = max(verdicts, key=VERDICTS.index)
    renewal_rows: list[dict[str, object]] = [
        {
            "name": r.name,
            "at": r.started_at,
            "outcome": r.outcome,
            "detail": r.detail,
            "old_sha256": r.old_sha256,
            "new_sha256": r.new_sha256,
        }
        for r in renewals(store, since=start, limit=500)
    ]
    return Report(
        config.tenant.name,
        start,
        now,
        now,
        overall,
        counts,
        connector_reports,
        addresses,
        items,
        upcoming,
        renewal_rows,
    )
