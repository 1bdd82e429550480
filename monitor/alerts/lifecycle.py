"""The alert lifecycle of one (endpoint address, rule) pair, as a pure function.

An alert opens when a finding of the configured minimum severity or worse has persisted for
``persist`` consecutive probes, escalates when its severity rises, is re-sent every ``remind``
interval of its severity while open, and resolves (with a recovery message) when the finding is
gone.  A rule that was not evaluated (a failed probe says nothing about the certificate) leaves
its alert untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from checks.base import Finding, Severity
from monitor.alerts.settings import AlertSettings


@dataclass(frozen=True, slots=True)
class AlertState:
    """What the store knows of one alert (``id`` is ``None`` for a new one)."""

    rule: str
    severity: Severity
    status: str  # pending | open | resolved
    streak: int
    message: str
    first_seen: datetime
    id: int | None = None
    opened_at: datetime | None = None
    resolved_at: datetime | None = None
    last_notified_at: datetime | None = None
    transitions: int = 0


@dataclass(frozen=True, slots=True)
class Transition:
    """Something to tell people about.  ``number`` makes (alert, number, channel) unique."""

    kind: str  # opened | escalated | reminder | resolved
    alert: AlertState
    number: int


# Rules that are one alert: a certificate that was expiring and is now expired has one problem,
# its lifetime, which escalates; it does not resolve one alert and open another.
ALERT_KEYS = {"cert.expired": "cert.expiring"}


def alert_key(rule: str) -> str:
    """The alert a finding of ``rule`` belongs to."""
    return ALERT_KEYS.get(rule, rule)


def _worst_per_rule(findings: Iterable[Finding], settings: AlertSettings) -> dict[str, Finding]:
    worst: dict[str, Finding] = {}
    for finding in findings:
        if finding.severity.rank < settings.min_severity.rank:
            continue
        key = alert_key(finding.rule)
        known = worst.get(key)
        if known is None or finding.severity.rank > known.severity.rank:
            worst[key] = finding
    return worst


def _notify(state: AlertState, kind: str, now: datetime) -> tuple[AlertState, Transition]:
    number = state.transitions + 1
    state = replace(state, transitions=number, last_notified_at=now)
    return state, Transition(kind, state, number)


def decide(
    alerts: Mapping[str, AlertState],
    findings: Iterable[Finding],
    evaluated: frozenset[str],
    settings: AlertSettings,
    now: datetime,
) -> tuple[list[AlertState], list[Transition]]:
    """New states for the address's active alerts (and new ones), and the transitions to send.

    ``alerts`` maps rule id to the address's pending or open alert.
    """
    current = _worst_per_rule(findings, settings)
    states: list[AlertState] = []
    transitions: list[Transition] = []

    def emit(state: AlertState, kind: str) -> AlertState:
        state, transition = _notify(state, kind, now)
        transitions.append(transition)
        return state

    evaluated = evaluated | {alert_key(rule) for rule in evaluated}
    for rule_id, state in alerts.items():
        finding = current.get(alert_key(rule_id))
        if finding is None:
            if rule_id not in evaluated:
                continue  # nothing new is known: keep it as it is
            if state.status == "open":
                state = emit(replace(state, status="resolved", resolved_at=now), "resolved")
            else:
                state = replace(state, status="resolved", resolved_at=now)
            states.append(state)
            continue
        state = replace(state, streak=state.streak + 1, message=finding.message)
        if state.status == "pending":
            state = replace(state, severity=finding.severity)
            if state.streak >= settings.persist:
                state = emit(replace(state, status="open", opened_at=now), "opened")
        elif finding.severity.rank > state.severity.rank:
            state = emit(replace(state, severity=finding.severity), "escalated")
        else:
            state = replace(state, severity=finding.severity)
            interval = settings.reminder_after(state.severity)
            last = state.last_notified_at or state.opened_at or now
            if interval is not None and now - last >= interval:
                state = emit(state, "reminder")
        states.append(state)

    known = {alert_key(rule_id) for rule_id in alerts}
    for rule_id, finding in current.items():
        if rule_id in known:
            continue
        state = AlertState(rule_id, finding.severity, "pending", 1, finding.message, now)
        if settings.persist <= 1:
            state = emit(replace(state, status="open", opened_at=now), "opened")
        states.append(state)
    return states, transitions
