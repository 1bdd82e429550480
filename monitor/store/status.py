"""What ``relaycert status`` shows: each address's newest result, open alerts, expiry, the last
success, and messages that could not be delivered."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from checks.base import Direction, Severity
from monitor.store import queries
from monitor.store.engine import Store
from monitor.store.models import FindingRow


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
        latest = queries.latest_observations(session)
        ok_at = queries.last_ok(session)
        alerts = queries.open_alerts(session)
        known = queries.last_known(session, latest)
        rows_read = [*latest, *known.values()]
        findings = queries.findings_of(session, [o.id for o in rows_read])
        expiry = queries.not_after(session, {o.leaf_sha256 for o in rows_read if o.leaf_sha256})
        messages = queries.failed_messages(session)
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
        return queries.failed_total(session)
