"""Where ``check_relaycert``'s answers come from: probing now (:func:`live`), or what the
daemon stored (:func:`stored`), each stored result older than ``--max-age`` UNKNOWN."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography import x509

from checks.base import Direction, Finding, Observation, Policy, ProbeStatus, Severity
from checks.validity import expiring
from monitor.cli import nagios
from monitor.config.loader import Config
from monitor.errors import RelaycertError

EXPIRING = "cert.expiring"
STALE = "plugin.stale"
NOT_STORED = "plugin.not_stored"


def live(
    config: Config,
    names: Sequence[str] | None,
    now: datetime,
    keep: bool,
    max_age: timedelta,
) -> list[nagios.Checked]:
    """Probe now (``config`` already cut to the check's time limit); the client direction from
    the store when this process could not listen (the daemon owns the capture port)."""
    from monitor.cli.scan import collect

    records = collect(config, names, now, keep)
    checked = nagios.from_records([r for r in records if not r.result.local])
    local = [r for r in records if r.result.local]
    if not local:
        return checked
    # The client direction could not be measured here (the daemon owns the capture port):
    # answered from the daemon's stored results, or UNKNOWN saying why.
    wanted = {r.result.target.endpoint for r in local}
    try:
        from_store = stored(config, sorted(wanted), now, max_age, Direction.TO_EXO)
    except RelaycertError:
        from_store = []
    answered = {c.endpoint for c in from_store}
    for record in local:
        if record.result.target.endpoint in answered:
            continue
        target = record.result.target
        why = (
            f"not measured: {record.result.error}; nothing fresh stored by the daemon either "
            "(check_relaycert --from-store reads its results)"
        )
        checked.append(
            nagios.Checked(
                target.endpoint,
                target.address or "unresolved",
                target.direction,
                (Finding(NOT_STORED, Severity.UNKNOWN, why),),
            )
        )
    return checked + from_store


def stored(
    config: Config,
    names: Sequence[str] | None,
    now: datetime,
    max_age: timedelta,
    direction: Direction | None = None,
) -> list[nagios.Checked]:
    """The stored results of the named endpoints (all when none are named), each newest
    result older than ``max_age`` with an UNKNOWN finding of its own."""
    from monitor.store.engine import Store
    from monitor.store.reads.plugin import stored_addresses

    store = Store.open(config.database_url())
    try:
        rows = stored_addresses(store, set(names) if names else None)
    finally:
        store.close()
    configured = {e.name for e in config.endpoints}
    checked = []
    if direction is None:
        seen = {row.endpoint for row in rows}
        for name in sorted(set(names or configured) - seen):
            endpoint = next(e for e in config.endpoints if e.name == name)
            checked.append(
                nagios.Checked(
                    name,
                    "-",
                    Direction.TO_EXO if endpoint.outbound is not None else Direction.FROM_EXO,
                    (Finding(STALE, Severity.UNKNOWN, "nothing stored for this endpoint yet"),),
                )
            )
    for row in rows:
        if row.endpoint not in configured:
            continue
        side = Direction(row.direction)
        if direction is not None and side is not direction:
            continue
        findings = [Finding(rule, Severity(sev), message) for rule, sev, message in row.findings]
        findings = _expiry_now(findings, row.leaf, config, row.endpoint, now)
        if now - row.measured_at > max_age:
            findings.append(
                Finding(
                    STALE,
                    Severity.UNKNOWN,
                    f"the newest stored result is from {row.measured_at:%Y-%m-%d %H:%M} UTC, "
                    f"older than --max-age {_span(max_age)}; is `relaycert run` running?",
                )
            )
        checked.append(
            nagios.Checked(
                row.endpoint,
                row.address or "unresolved",
                side,
                tuple(findings),
                row.not_before,
                row.not_after,
                row.contract,
                row.measured_at,
            )
        )
    return checked


def _expiry_now(
    findings: list[Finding],
    leaf: x509.Certificate | None,
    config: Config,
    endpoint: str,
    now: datetime,
) -> list[Finding]:
    """The leaf's ``cert.expiring`` judged now by the rule itself, with this check's thresholds
    (``-w``/``-c``, the endpoint's renewal), instead of the daemon's stored verdict: the state,
    the finding and the performance data agree (an intermediate's stored finding stays)."""
    if leaf is None:
        return findings
    kept = [f for f in findings if not (f.rule == EXPIRING and f.message.startswith("leaf "))]
    policy = Policy(now, expiry=config.expiry_for(endpoint))
    return [*kept, *expiring.evaluate(Observation(ProbeStatus.FILE, (leaf,)), policy)]


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
