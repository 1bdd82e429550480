"""The alert lifecycle (pure): open, damping, escalation, reminders, recovery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from checks.base import Finding, Severity
from monitor.alerts.lifecycle import AlertState, decide
from monitor.alerts.settings import AlertSettings

T0 = datetime(2026, 11, 28, tzinfo=UTC)
ALL = frozenset(
    {"cert.expiring", "cert.untrusted", "probe.unreachable", "cert.client_auth_missing"}
)


def f(rule: str, severity: Severity) -> Finding:
    return Finding(rule, severity, f"{rule} {severity.value}")


def run(
    states: dict[str, AlertState],
    findings: list[Finding],
    now: datetime,
    settings: AlertSettings | None = None,
    evaluated: frozenset[str] = ALL,
) -> tuple[dict[str, AlertState], list[str]]:
    new, transitions = decide(states, findings, evaluated, settings or AlertSettings(), now)
    merged = {**states, **{s.rule: s for s in new}}  # decide() returns only what changed
    active = {rule: s for rule, s in merged.items() if s.status != "resolved"}
    return active, [
        f"{t.kind}:{t.alert.rule}:{t.alert.severity.value}:{t.number}" for t in transitions
    ]


def test_open_escalate_remind_resolve() -> None:
    states, sent = run({}, [f("cert.expiring", Severity.WARNING)], T0)
    assert sent == ["opened:cert.expiring:warning:1"]
    states, sent = run(states, [f("cert.expiring", Severity.WARNING)], T0 + timedelta(hours=1))
    assert sent == []  # no repeat within the reminder interval
    states, sent = run(states, [f("cert.expiring", Severity.CRITICAL)], T0 + timedelta(hours=2))
    assert sent == ["escalated:cert.expiring:critical:2"]
    states, sent = run(states, [f("cert.expiring", Severity.CRITICAL)], T0 + timedelta(hours=20))
    assert sent == []
    states, sent = run(
        states, [f("cert.expiring", Severity.CRITICAL)], T0 + timedelta(days=1, hours=3)
    )
    assert sent == ["reminder:cert.expiring:critical:3"]
    states, sent = run(states, [], T0 + timedelta(days=2))
    assert sent == ["resolved:cert.expiring:critical:4"] and states == {}


def test_warning_reminds_weekly() -> None:
    states, _ = run({}, [f("cert.expiring", Severity.WARNING)], T0)
    _, sent = run(states, [f("cert.expiring", Severity.WARNING)], T0 + timedelta(days=6))
    assert sent == []
    _, sent = run(states, [f("cert.expiring", Severity.WARNING)], T0 + timedelta(days=7))
    assert sent == ["reminder:cert.expiring:warning:2"]


def test_flapping_is_damped() -> None:
    settings = AlertSettings(persist=3)
    states, sent = run({}, [f("cert.untrusted", Severity.CRITICAL)], T0, settings)
    assert sent == [] and states["cert.untrusted"].status == "pending"
    states, sent = run(states, [], T0 + timedelta(hours=1), settings)
    assert sent == [] and states == {}  # gone before it persisted: never announced
    for hour in range(3):
        states, sent = run(
            states,
            [f("cert.untrusted", Severity.CRITICAL)],
            T0 + timedelta(hours=2 + hour),
            settings,
        )
    assert sent == ["opened:cert.untrusted:critical:1"]


def test_info_findings_alert_only_when_configured() -> None:
    _, sent = run({}, [f("cert.client_auth_missing", Severity.INFO)], T0)
    assert sent == []
    _, sent = run(
        {},
        [f("cert.client_auth_missing", Severity.INFO)],
        T0,
        AlertSettings(min_severity=Severity.INFO),
    )
    assert sent == ["opened:cert.client_auth_missing:info:1"]


def test_rule_not_evaluated_keeps_its_alert() -> None:
    states, _ = run({}, [f("cert.expiring", Severity.CRITICAL)], T0)
    # The next probe fails: only session rules ran, so the certificate alert stays open.
    states, sent = run(
        states,
        [f("probe.unreachable", Severity.UNKNOWN)],
        T0 + timedelta(hours=1),
        evaluated=frozenset({"probe.unreachable"}),
    )
    assert sent == ["opened:probe.unreachable:unknown:1"]
    assert states["cert.expiring"].status == "open"


def test_expiring_then_expired_is_one_alert_that_escalates() -> None:
    """Before: "RESOLVED certificate expiring soon" and "CRITICAL certificate expired" in the
    same second.  A certificate's remaining lifetime is one alert."""
    states, sent = run({}, [f("cert.expiring", Severity.CRITICAL)], T0)
    assert sent == ["opened:cert.expiring:critical:1"]
    states, sent = run(states, [f("cert.expired", Severity.CRITICAL)], T0 + timedelta(hours=1))
    assert sent == []  # same alert, same severity: no resolve, no new alert
    assert list(states) == ["cert.expiring"] and "cert.expired" in states["cert.expiring"].message
    states, sent = run({}, [f("cert.expiring", Severity.WARNING)], T0)
    states, sent = run(states, [f("cert.expired", Severity.CRITICAL)], T0 + timedelta(hours=1))
    assert sent == ["escalated:cert.expiring:critical:2"]
    states, sent = run(states, [], T0 + timedelta(hours=2))  # renewed
    assert sent == ["resolved:cert.expiring:critical:3"]
