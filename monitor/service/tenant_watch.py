"""Tenant drift in the daemon: at start and at every reload (a changed Exchange export reloads),
compare the tenant with the snapshot stored last time and store the findings as the observation
of the pseudo-endpoint ``(tenant)``, so they alert, show in ``status`` and in reports like any
other.  The snapshot travels in that observation's ``session``."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from checks import tenant
from checks.base import ProbeStatus
from monitor.alerts.policy import Tracking
from monitor.alerts.tracking import track
from monitor.config.loader import Config
from monitor.results import ProbeResult, ProbeTarget, ScanRecord
from monitor.store import queries, writes
from monitor.store.engine import Store

TENANT = "(tenant)"
RULE_IDS = frozenset(r.id for r in tenant.RULES)


def last_snapshot(store: Store) -> dict[str, object] | None:
    with store.reading("reading the tenant snapshot") as session:
        row = queries.endpoints_by_name(session, [TENANT]).get(TENANT)
        if row is None or row.id is None:
            return None
        latest = queries.latest_observations(session, [row.id])
    found = latest[0].session if latest else None
    snapshot = (found or {}).get("snapshot")
    return snapshot if isinstance(snapshot, dict) else None


def check(config: Config, store: Store, tracking: Tracking, now: datetime) -> ScanRecord:
    """Compare, store, track; the record (its findings are the tenant's drift)."""
    connectors = {c.name: c.tls_sender_certificate_name for c in config.connectors}
    new = tenant.snapshot(connectors, config.tenant.accepted_domains)
    used = {e.connector for e in config.endpoints if e.connector}
    findings = tenant.compare(last_snapshot(store), new, used)
    digest = hashlib.sha256(json.dumps(new, sort_keys=True).encode()).hexdigest()
    target = ProbeTarget(TENANT, "tenant", 0, "tenant", "tenant", "", 0.0)
    result = ProbeResult(target, now, ProbeStatus.FILE)
    result.session = {"snapshot": new, "digest": digest}
    record = ScanRecord(result, (), tuple(findings), "tenant", None, RULE_IDS)
    writes.record(
        store, [record], lambda session, ids: track(session, ids, [record], tracking, now)
    )
    return record
