"""Assemble a compliance report from what :mod:`.query` read: pure functions of plain data
(verdicts, connector scenarios, timeline), so the report logic is testable without a store."""

from __future__ import annotations

from datetime import datetime, timedelta

from checks.base import UNKNOWN_DELIVERY, Direction, Severity, anchor
from checks.matching import base_domain, registered_domain
from monitor.certview import CertInfo, cert_info
from monitor.config.loader import Config
from monitor.config.sections import ConnectorConfig
from monitor.reports import query
from monitor.reports.errors import ATTR36, BREAKING, DELIVERY, DELIVERY_BREAKING, SCENARIOS
from monitor.reports.model import (
    AddressReport,
    ConnectorReport,
    Report,
    Scenario,
)
from monitor.store.queries import stored_contract
from monitor.store.reads.renewal import RenewalStatus

VERDICTS = ("compliant", "at risk", "non-compliant")

SERVED, CLIENT = Direction.FROM_EXO.value, Direction.TO_EXO.value


def _verdict(severities: list[str]) -> str:
    ranks = {Severity(s).rank for s in severities}
    if Severity.CRITICAL.rank in ranks:
        return "non-compliant"
    if ranks & {Severity.WARNING.rank, Severity.UNKNOWN.rank}:
        return "at risk"
    return "compliant"


SHOWN = 5  # addresses named in full in one line of evidence; the rest are counted


def _names(items: list[str]) -> str:
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def _unmeasured(a: AddressReport) -> str:
    if a.last_seen is None:
        return f"{a.label} (never measured)"
    return f"{a.label} (last seen {a.last_seen:%Y-%m-%d %H:%M} UTC, not measured since)"


def _judged(
    addresses: list[AddressReport], accepted: str | None, breaking: dict[str, str], docs: str
) -> tuple[bool | None, str, str | None, str | None, list[str]]:
    """(works, evidence, error, fix, affected addresses) of one direction.  It is never better
    than its worst address: broken when any address is known to fail (its last known findings
    count while it is not measured), unknown while any is not measured, and works only when
    every address was measured and works.  The evidence names which fail, which were not
    measured (with when they were last seen) and which work."""
    failing: dict[str, tuple[str, str]] = {}
    for a in addresses:
        for sev, rule, msg in a.findings:
            if rule in breaking and sev == "critical":
                failing.setdefault(a.label, (rule, msg))
    unmeasured = [a for a in addresses if not a.measured and a.label not in failing]
    working = [
        a for a in addresses if a.measured and a.certificate is not None and a.label not in failing
    ]
    if accepted is None:
        evidence = "the connector's domain is not an accepted domain of the tenant"
        fix = "Add the domain as an accepted domain, or change the connector."
        return False, evidence, ATTR36, fix, [a.label for a in addresses]
    total = len(addresses)
    tail = ""
    if unmeasured:
        tail += f"; {len(unmeasured)} of {total} not measured: " + _names(
            [_unmeasured(a) for a in unmeasured]
        )
    if working:
        tail += "; working: " + _names([a.label for a in working])
    if failing:
        rule, _ = next(iter(failing.values()))
        parts = [f"{label}: {r}: {m}" for label, (r, m) in failing.items()]
        evidence = f"{len(failing)} of {total} fail: " + "; ".join(parts[:SHOWN])
        if len(parts) > SHOWN:
            evidence += f" and {len(parts) - SHOWN} more"
        fixes = sorted({r for r, _ in failing.values()})
        fix = "How to fix: " + ", ".join(f"{r} ({docs}#{anchor(r)})" for r in fixes)
        return False, evidence + tail, breaking[rule], fix, list(failing)
    if unmeasured:
        fix = (
            "Make the endpoints reachable by the monitor (for outbound checks: the route of "
            "the probe domain and the capture listener); until then the verdict is unknown."
        )
        return None, tail.removeprefix("; "), None, fix, [a.label for a in unmeasured]
    if not working:
        fix = "Make the endpoints reachable by the monitor."
        return None, "no endpoint of this connector was probed successfully", None, fix, []
    evidence = (
        f"all {len(working)} work: "
        + "; ".join(
            f"{a.label} presents {a.certificate.subject}"  # type: ignore[union-attr]
            for a in working[:SHOWN]
        )
    )
    if len(working) > SHOWN:
        evidence += f" and {len(working) - SHOWN} more"
    return True, evidence, None, None, []


def _scenarios(
    addresses: list[AddressReport], accepted: str | None, basis: str, docs: str
) -> list[Scenario]:
    works, evidence, error, fix, affected = _judged(addresses, accepted, BREAKING, docs)
    return [
        Scenario(key, title, text, works, f"{basis}: {evidence}", error, fix, affected)
        for key, title, text in SCENARIOS
    ]


def _delivery(addresses: list[AddressReport], docs: str) -> Scenario:
    works, evidence, error, fix, affected = _judged(addresses, "listener", DELIVERY_BREAKING, docs)
    key, title, text = DELIVERY
    by_contract: dict[str, list[str]] = {}
    for a in addresses:
        by_contract.setdefault(a.contract or UNKNOWN_DELIVERY, []).append(a.endpoint)
    judged = "; ".join(
        f"{contract} ({_names(sorted(set(names)))})" for contract, names in by_contract.items()
    )
    evidence = f"listener probes: {evidence}" + (f"; judged by: {judged}" if judged else "")
    return Scenario(key, title, text, works, evidence, error, fix, affected)


# A miss keeps every finding of the last measured probe but the probe's own reachability
# (``probe.*``) and the miss's own rule, which the newest observation judges itself.
MISS_PREFIXES = ("probe.", "outbound.not_delivered")


def address_report(row: query.AddressRow, now: datetime) -> AddressReport:
    """One address; during an outage its last known certificate and that certificate's
    findings still count (marked "last seen"), so an outage never improves a verdict."""
    endpoint, obs = row.endpoint, row.observation
    findings = list(row.findings)
    if row.last_seen is not None:
        seen = f" (last seen {row.last_seen:%Y-%m-%d %H:%M} UTC, not measured since)"
        findings += [
            (sev, rule, msg + seen)
            for sev, rule, msg in row.last_findings
            if not rule.startswith(MISS_PREFIXES)
        ]
    return AddressReport(
        endpoint.name,
        endpoint.host,
        endpoint.port,
        obs.address,
        endpoint.connector,
        obs.direction,
        obs.status,
        obs.last_seen_at or obs.started_at,
        obs.tls_version,
        cert_info(row.leaf, now) if row.leaf else None,
        sorted(findings, key=lambda f: -Severity(f[0]).rank),
        row.events,
        row.attempts,
        row.successes,
        row.last_seen,
        row.measured,
        stored_contract(obs.session) if obs.direction == SERVED else None,
    )


def _relay_rows(mine: list[AddressReport]) -> tuple[list[AddressReport], str, bool]:
    """What the relay direction is judged from: per endpoint its outbound checks (the client
    certificate as presented), or, for an endpoint without one, its served certificate; the
    basis says which endpoints are measured and which inferred."""
    measured = sorted({a.endpoint for a in mine if a.direction == CLIENT})
    inferred = sorted({a.endpoint for a in mine if a.endpoint not in measured})
    rows = [a for a in mine if a.direction == (CLIENT if a.endpoint in measured else SERVED)]
    parts = []
    if measured:
        parts.append(f"outbound checks of {', '.join(measured)}")
    if inferred:
        parts.append(
            f"inferred from the served certificate of {', '.join(inferred)} (no outbound check)"
        )
    return rows, "; ".join(parts) or "no endpoint", bool(inferred)


def connector_report(
    config: Config, connector: ConnectorConfig, addresses: list[AddressReport]
) -> ConnectorReport:
    mine = [a for a in addresses if a.connector == connector.name]
    served = [a for a in mine if a.direction == SERVED]
    domain = base_domain(connector.tls_sender_certificate_name)
    accepted = registered_domain(domain, config.tenant.accepted_domains)
    severities = [s for a in mine for s, _, _ in a.findings]
    relay, basis, inferred = _relay_rows(mine)
    verdict = _verdict(severities) if accepted else "non-compliant"
    if verdict == "compliant" and not any(a.measured for a in mine):
        verdict = "at risk"  # nothing of it measured (yet): never "compliant" unseen
    return ConnectorReport(
        connector.name,
        connector.tls_sender_certificate_name,
        domain,
        accepted,
        verdict,
        _scenarios(relay, accepted, basis, config.alerts.docs_url),
        sorted({a.endpoint for a in mine}),
        basis,
        inferred,
        _delivery(served, config.alerts.docs_url),
    )


def _renewal_rows(attempts: list[RenewalStatus]) -> list[dict[str, object]]:
    return [
        {
            "name": r.name,
            "at": r.started_at,
            "outcome": r.outcome,
            "detail": r.detail,
            "old_sha256": r.old_sha256,
            "new_sha256": r.new_sha256,
        }
        for r in attempts
    ]


def assemble(
    config: Config,
    rows: list[query.AddressRow],
    attempts: list[RenewalStatus],
    start: datetime,
    now: datetime,
) -> Report:
    addresses = sorted(
        (address_report(r, now) for r in rows),
        key=lambda a: (a.endpoint, a.direction != SERVED, a.address),
    )
    connectors = [connector_report(config, c, addresses) for c in config.connectors]
    all_severities = [s for a in addresses for s, _, _ in a.findings]
    counts = {s.value: all_severities.count(s.value) for s in Severity}
    timeline: dict[str, tuple[str, CertInfo]] = {}
    for a in addresses:
        if a.certificate is not None:
            timeline.setdefault(a.certificate.sha256, (a.endpoint, a.certificate))
    items = sorted(timeline.values(), key=lambda item: item[1].not_after)
    upcoming = [i for i in items if i[1].not_after - now < timedelta(days=90)]  # strictly within
    verdicts = [c.verdict for c in connectors] + [_verdict(all_severities)]
    return Report(
        config.tenant.name,
        config.alerts.docs_url,
        start,
        now,
        now,
        max(verdicts, key=VERDICTS.index),
        counts,
        connectors,
        addresses,
        items,
        upcoming,
        _renewal_rows(attempts),
    )
