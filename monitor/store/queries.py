"""``relaycert status`` and ``relaycert accept``: read (and, to accept, set) the store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from sqlalchemy import func, select
from sqlmodel import Session, col

from checks.base import Observation, ProbeStatus, Severity
from checks.drift import baseline_of
from monitor.alerts.tracking import set_baseline
from monitor.errors import RelaycertError
from monitor.store.engine import Store
from monitor.store.models import (
    AlertRow,
    CertificateRow,
    EndpointRow,
    FindingRow,
    ObservationRow,
    OutboxRow,
    RenewalRow,
)


@dataclass(frozen=True)
class AddressStatus:
    endpoint: str
    host: str
    port: int
    address: str
    last_probe: datetime
    status: str
    worst_finding: str | None
    worst_rule: str | None
    open_alert: str | None
    days_left: float | None
    last_ok: datetime | None


@dataclass(frozen=True)
class FailedMessage:
    channel: str
    kind: str
    endpoint: str
    rule: str
    error: str | None
    attempts: int


def _latest(session: Session) -> list[ObservationRow]:
    """The newest observation row of every endpoint address (rows are stored on change)."""
    newest = select(func.max(ObservationRow.id)).group_by(
        col(ObservationRow.endpoint_id), col(ObservationRow.address)
    )
    return list(session.scalars(select(ObservationRow).where(col(ObservationRow.id).in_(newest))))


def status(store: Store, now: datetime) -> tuple[list[AddressStatus], list[FailedMessage]]:
    with store.session() as session:
        endpoints = {e.id: e for e in session.scalars(select(EndpointRow))}
        latest = _latest(session)
        last_ok = {
            (row[0], row[1]): row[2]
            for row in session.execute(
                select(
                    col(ObservationRow.endpoint_id),
                    col(ObservationRow.address),
                    func.max(func.coalesce(ObservationRow.last_seen_at, ObservationRow.started_at)),
                )
                .where(col(ObservationRow.status) == "ok")
                .group_by(col(ObservationRow.endpoint_id), col(ObservationRow.address))
            )
        }
        alerts: dict[tuple[int, str], Severity] = {}
        for alert in session.scalars(select(AlertRow).where(col(AlertRow.status) == "open")):
            key, severity = (alert.endpoint_id, alert.address), Severity(alert.severity)
            if key not in alerts or severity.rank > alerts[key].rank:
                alerts[key] = severity
        # Two batched queries, not two per address.
        top: dict[int, FindingRow] = {}
        for finding in session.scalars(
            select(FindingRow).where(col(FindingRow.observation_id).in_([o.id for o in latest]))
        ):
            known = top.get(finding.observation_id)
            if known is None or Severity(finding.severity).rank > Severity(known.severity).rank:
                top[finding.observation_id] = finding
        leaves = {o.leaf_sha256 for o in latest if o.leaf_sha256}
        expiry: dict[str, datetime] = {
            sha: not_after
            for sha, not_after in session.execute(
                select(col(CertificateRow.sha256), col(CertificateRow.not_after)).where(
                    col(CertificateRow.sha256).in_(leaves)
                )
            )
        }
        rows: list[AddressStatus] = []
        for obs in latest:
            endpoint = endpoints[obs.endpoint_id]
            worst = top.get(obs.id or 0)
            not_after = expiry.get(obs.leaf_sha256 or "")
            ok_at = last_ok.get((obs.endpoint_id, obs.address))
            rows.append(
                AddressStatus(
                    endpoint.name,
                    endpoint.host,
                    endpoint.port,
                    obs.address,
                    obs.last_seen_at or obs.started_at,
                    obs.status,
                    worst.severity if worst else None,
                    worst.rule if worst else None,
                    alerts[(obs.endpoint_id, obs.address)].value
                    if (obs.endpoint_id, obs.address) in alerts
                    else None,
                    round((not_after - now).total_seconds() / 86400, 1) if not_after else None,
                    ok_at,
                )
            )
        failed = [
            FailedMessage(
                m.channel,
                m.kind,
                str(m.payload.get("endpoint")),
                str(m.payload.get("rule")),
                m.last_error,
                m.attempts,
            )
            for m in session.scalars(
                select(OutboxRow)
                .where(col(OutboxRow.status) == "failed")
                .order_by(col(OutboxRow.id).desc())
                .limit(20)
            )
        ]
    rows.sort(key=lambda r: (r.endpoint, r.address))
    return rows, failed


@dataclass(frozen=True)
class RenewalStatus:
    name: str
    started_at: datetime
    outcome: str
    detail: str | None
    old_sha256: str | None
    new_sha256: str | None


def renewals(store: Store, since: datetime | None = None, limit: int = 20) -> list[RenewalStatus]:
    """Recent renewal attempts, newest first."""
    query = select(RenewalRow).order_by(col(RenewalRow.id).desc()).limit(limit)
    if since is not None:
        query = query.where(col(RenewalRow.started_at) >= since)
    with store.session() as session:
        return [
            RenewalStatus(r.name, r.started_at, r.outcome, r.detail, r.old_sha256, r.new_sha256)
            for r in session.scalars(query)
        ]


def accept(store: Store, endpoint: str, now: datetime) -> list[tuple[str, str]]:
    """Make each address's current certificate its baseline; returns (address, sha256)."""
    accepted: list[tuple[str, str]] = []
    with store.session() as session, session.begin():
        row = session.scalars(select(EndpointRow).where(col(EndpointRow.name) == endpoint)).first()
        if row is None or row.id is None:
            raise RelaycertError(f"endpoint '{endpoint}' has never been probed; run a scan first")
        for obs in _latest(session):
            if obs.endpoint_id != row.id or not obs.chain:
                continue
            ders = [
                session.scalar(
                    select(col(CertificateRow.der)).where(col(CertificateRow.sha256) == sha)
                )
                for sha in obs.chain
            ]
            chain = tuple(x509.load_der_x509_certificate(d) for d in ders if d is not None)
            candidate = baseline_of(Observation(ProbeStatus.OK, chain, tls_version=obs.tls_version))
            if candidate is not None:
                set_baseline(session, row.id, obs.address, candidate, "manual", now)
                accepted.append((obs.address, candidate.sha256))
    if not accepted:
        raise RelaycertError(f"endpoint '{endpoint}' has no probe with a certificate to accept")
    return accepted
