"""What happens to a scan's results besides storing them, inside the same transaction:
baselines for drift (first certificate, automatic acceptance of clean renewals) and the alert
lifecycle with its outbox messages.  One transaction means an alert transition and its messages
are written together or not at all, so a crash can neither lose nor repeat a transition."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

from checks.base import Baseline, Severity, anchor
from checks.certinfo import fingerprint
from checks.registry import BUILTIN_RULES
from monitor.alerts.lifecycle import Transition, alert_key, decide
from monitor.alerts.policy import Tracking
from monitor.results import ScanRecord
from monitor.store import alerts
from monitor.store.baselines import insert_first, set_baseline
from monitor.store.messages import enqueue_routed
from monitor.store.queries import Key
from notifications.base import Notification

if TYPE_CHECKING:  # the caller's transaction
    from sqlmodel import Session


def acceptable(record: ScanRecord) -> bool:
    """A certificate that passes every rule (drift reports aside) may become the baseline."""
    return record.candidate is not None and not any(
        f.severity.rank >= Severity.WARNING.rank and not f.rule.startswith("drift.")
        for f in record.findings
    )


def update_baselines(
    session: Session,
    endpoint_ids: dict[str, int],
    records: Sequence[ScanRecord],
    tracking: Tracking,
    now: datetime,
) -> None:
    first: dict[Key, Baseline] = {}
    for record in records:
        target, candidate = record.result.target, record.candidate
        if candidate is None:
            continue
        key = (endpoint_ids[target.endpoint], target.address, target.direction.value)
        known = record.baseline
        if known is None:
            first.setdefault(key, candidate)
        elif known.sha256 != candidate.sha256 and tracking.auto_accept and acceptable(record):
            set_baseline(session, key, candidate, "auto", now)
    insert_first(session, first, now)


def _notification(
    record: ScanRecord, transition: Transition, channel: str, *, docs_url: str, now: datetime
) -> Notification:
    alert, target = transition.alert, record.result.target
    leaf = record.chain[0] if record.chain else None
    # The finding behind the alert ("cert.expired" behind the "cert.expiring" alert), so the
    # message is titled by what is wrong now.
    actual = max(
        (f for f in record.findings if alert_key(f.rule) == alert_key(alert.rule)),
        key=lambda f: f.severity.rank,
        default=None,
    )
    rule_id = actual.rule if actual is not None and transition.kind != "resolved" else alert.rule
    rule = BUILTIN_RULES.get(rule_id)
    return Notification(
        kind=transition.kind,
        severity=alert.severity.value,
        rule=rule_id,
        title=rule.title if rule else rule_id,
        endpoint=target.endpoint,
        host=target.host,
        port=target.port,
        address=target.address,
        connector=record.connector,
        message=alert.message,
        at=now.isoformat(),
        key=f"relaycert:{alert.id}:{transition.number}:{channel}",
        days_left=round((leaf.not_valid_after_utc - now).total_seconds() / 86400, 2)
        if leaf
        else None,
        fingerprint=fingerprint(leaf) if leaf else None,
        docs_url=f"{docs_url}#{anchor(rule_id)}" if docs_url else None,
        direction=target.direction.value,
        contract=(record.contract() or {}).get("contract"),
    )


def track(
    session: Session,
    endpoint_ids: dict[str, int],
    records: Sequence[ScanRecord],
    tracking: Tracking,
    now: datetime,
) -> None:
    """Everything :class:`Tracking` asks for, in the caller's transaction."""
    alerts.serialise(session, endpoint_ids.values())
    update_baselines(session, endpoint_ids, records, tracking, now)
    apply_alerts(session, endpoint_ids, records, tracking, now)


def apply_alerts(
    session: Session,
    endpoint_ids: dict[str, int],
    records: Sequence[ScanRecord],
    tracking: Tracking,
    now: datetime,
) -> int:
    """Advance every alert of the scanned addresses; enqueue the messages.  Returns how many."""
    if tracking.alerts is None:
        return 0
    rows = alerts.pending_and_open(session, endpoint_ids.values())
    enqueued = 0
    for record in records:
        target = record.result.target
        key = (endpoint_ids[target.endpoint], target.address, target.direction.value)
        known = rows[key]
        states, transitions = decide(
            {r: alerts.state(a) for r, a in known.items()},
            record.findings,
            record.evaluated,
            tracking.alerts,
            now,
        )
        saved = alerts.save(session, key, known, list(states))
        for transition in transitions:
            row = saved[transition.alert.rule]
            state = alerts.state(row)  # now with the row's id, which the message key needs
            transition = Transition(transition.kind, state, transition.number)
            enqueued += enqueue_routed(
                session,
                tracking.channels,
                state.severity.value,
                record.connector,
                partial(_notification, record, transition, docs_url=tracking.docs_url, now=now),
                now,
                alert_id=row.id,
            )
    return enqueued
