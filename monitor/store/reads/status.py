"""What ``relaycert status``, the daemon's status page and its health check read: each
address's newest result, open alerts, expiry, the last success, and messages that could not be
delivered."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlmodel import Session, col

from checks.base import Direction, Severity
from monitor.store import queries
from monitor.store.engine import Store
from monitor.store.models import AlertRow, EndpointRow, FindingRow, ObservationRow, OutboxRow
from monitor.store.queries import Key

OPEN_ALERTS_SHOWN = 500


@dataclass(frozen=True)
class AddressStatus:
    endpoint: str
    host: str
    port: int
    address: str
    direction: str
    last_probe: datetime
    status: str
    worst_finding: str | None
    worst_rule: str | None
    open_alert: str | None
    days_left: float | None
    last_ok: datetime | None
    # Set while the newest probe measured nothing: when the certificate (and findings) shown,
    # which are the last known ones, were measured.
    last_seen: datetime | None = None
    # The served direction: the delivery contract the certificate was judged by (one line).
    contract: str | None = None


@dataclass(frozen=True)
class FailedMessage:
    channel: str
    kind: str
    endpoint: str
    rule: str
    error: str | None
    attempts: int


SERVED = Direction.FROM_EXO.value


def _worst(findings: list[FindingRow]) -> FindingRow | None:
    return max(findings, key=lambda f: Severity(f.severity).rank, default=None)


def status(store: Store, now: datetime) -> tuple[list[AddressStatus], list[FailedMessage]]:
    with store.reading("reading the status") as session:
        endpoints = {e.id: e for e in queries.endpoints_by_name(session).values()}
        ok_at = _last_ok(session)
        alerts = _worst_open(session)
        stored = queries.current(session, queries.latest_observations(session))
        latest, known, findings = stored.latest, stored.known, stored.findings
        expiry = queries.not_after(session, stored.leaves())
        messages = _failed_messages(session)
    rows: list[AddressStatus] = []
    for obs in latest:
        endpoint = endpoints[obs.endpoint_id]
        key = (obs.endpoint_id, obs.address, obs.direction)
        last = known.get(key) if obs.status in queries.MISSES else None
        # Unknown stays unknown: during a miss the last known certificate and its findings
        # still count beside the miss's own, so a miss never looks better than what was known.
        worst = _worst(
            findings.get(obs.id or 0, []) + (findings.get(last.id or 0, []) if last else [])
        )
        ends = expiry.get((last or obs).leaf_sha256 or "")
        alert = alerts.get(key)
        rows.append(
            AddressStatus(
                endpoint.name,
                endpoint.host,
                endpoint.port,
                obs.address,
                obs.direction,
                obs.last_seen_at or obs.started_at,
                obs.status,
                worst.severity if worst else None,
                worst.rule if worst else None,
                alert.value if alert else None,
                round((ends - now).total_seconds() / 86400, 1) if ends else None,
                ok_at.get(key),
                (last.last_seen_at or last.started_at) if last else None,
                queries.stored_contract((last or obs).session) if obs.direction == SERVED else None,
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
        for m in messages
    ]
    rows.sort(key=lambda r: (r.endpoint, r.direction, r.address))
    return rows, failed


def failed_total(store: Store) -> int:
    with store.reading("counting undelivered messages") as session:
        return _failed_count(session)


def _last_ok(session: Session) -> dict[Key, datetime]:
    """When each address last answered a probe successfully (per direction)."""
    o = ObservationRow
    query = (
        select(
            col(o.endpoint_id),
            col(o.address),
            col(o.direction),
            func.max(func.coalesce(col(o.last_seen_at), col(o.started_at))),
        )
        .where(col(o.status) == "ok")
        .group_by(col(o.endpoint_id), col(o.address), col(o.direction))
    )
    return {(e, a, d): when for e, a, d, when in session.execute(query)}


def _worst_open(session: Session) -> dict[Key, Severity]:
    """The worst open alert per address and direction."""
    worst: dict[Key, Severity] = {}
    for alert in session.scalars(select(AlertRow).where(col(AlertRow.status) == "open")):
        key = (alert.endpoint_id, alert.address, alert.direction)
        severity = Severity(alert.severity)
        if key not in worst or severity.rank > worst[key].rank:
            worst[key] = severity
    return worst


def _failed_count(session: Session) -> int:
    """How many messages could not be delivered, in all (a few are shown)."""
    query = select(func.count()).select_from(OutboxRow).where(col(OutboxRow.status) == "failed")
    return int(session.execute(query).scalar_one())


def _failed_messages(session: Session, limit: int = 20) -> list[OutboxRow]:
    query = (
        select(OutboxRow)
        .where(col(OutboxRow.status) == "failed")
        .order_by(col(OutboxRow.id).desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def open_alert_rows(store: Store) -> list[tuple[str, AlertRow]]:
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
