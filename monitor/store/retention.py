"""Retention: delete history older than a cutoff, never an address's newest observation.

Certificates are kept (they are few, deduplicated, and old reports may name them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, delete, func, or_, select
from sqlmodel import Session, col

from monitor.store.engine import Store
from monitor.store.models import (
    AlertRow,
    CaptureRow,
    ClaimRow,
    FindingRow,
    InstanceRow,
    ObservationRow,
    OutboxRow,
    ProbeDayRow,
)
from monitor.store.queries import newest_ids


@dataclass(frozen=True)
class Pruned:
    observations: int
    findings: int
    probe_days: int
    messages: int
    alerts: int
    captures: int = 0
    instances: int = 0  # instances last heard of before the cutoff
    claims: int = 0  # claims of work nobody has run since (an endpoint removed, say)


def _deleted(session: Session, statement: Delete) -> int:
    result = cast(CursorResult[Any], session.execute(statement))
    return int(result.rowcount)


def prune(store: Store, cutoff: datetime, dry_run: bool = False) -> Pruned:
    """Delete what is older than ``cutoff`` (one transaction, rolled back on a dry run)."""
    o = ObservationRow
    old = select(col(o.id)).where(
        func.coalesce(col(o.last_seen_at), col(o.started_at)) < cutoff,
        col(o.id).not_in(newest_ids()),
    )
    stale_alerts = select(col(AlertRow.id)).where(
        col(AlertRow.status) == "resolved", col(AlertRow.resolved_at) < cutoff
    )
    old_messages = delete(OutboxRow).where(
        col(OutboxRow.status).in_(["sent", "failed"]),
        or_(col(OutboxRow.created_at) < cutoff, col(OutboxRow.alert_id).in_(stale_alerts)),
    )
    referenced = select(col(OutboxRow.alert_id)).where(col(OutboxRow.alert_id).is_not(None))
    what = "counting what to prune" if dry_run else "pruning old history"
    with store.transaction(what, commit=not dry_run) as session:
        findings = _deleted(
            session, delete(FindingRow).where(col(FindingRow.observation_id).in_(old))
        )
        observations = _deleted(session, delete(o).where(col(o.id).in_(old)))
        days = _deleted(session, delete(ProbeDayRow).where(col(ProbeDayRow.day) < cutoff.date()))
        messages = _deleted(session, old_messages)
        alerts = _deleted(
            session,
            delete(AlertRow).where(
                col(AlertRow.id).in_(stale_alerts), col(AlertRow.id).not_in(referenced)
            ),
        )
        captures = _deleted(session, delete(CaptureRow).where(col(CaptureRow.at) < cutoff))
        instances = _deleted(
            session, delete(InstanceRow).where(col(InstanceRow.heartbeat_at) < cutoff)
        )
        claims = _deleted(session, delete(ClaimRow).where(col(ClaimRow.claimed_at) < cutoff))
    return Pruned(observations, findings, days, messages, alerts, captures, instances, claims)
