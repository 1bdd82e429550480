"""Monitoring-plugin output (Nagios, Icinga 2, Checkmk classic checks, Naemon):

    RELAYCERT CRITICAL - scanner 127.0.0.1 (served): ... | 'days_left_scanner_127.0.0.1'=1;10:;3:;;
    CRITICAL connector.name_not_covered scanner 127.0.0.1 (served): ...

One status line (service output and performance data), then the long output, one finding per
line, worst first.  Performance labels are quoted and made of safe characters only; values are
days without a unit (the plugin guidelines know no "days" unit).  The thresholds are the ones
``cert.expiring`` applies to that certificate: ``[expiry]`` days (or ``-w``/``-c``) capped by
the fraction of its lifetime, as "alert below" ranges (``10.00:``), so the performance data,
the finding and the state agree on one certificate.  The exit code is the plugin convention
(0, 1, 2, 3).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from checks.base import Direction, ExpiryThresholds, Finding, Severity, worst
from checks.certinfo import clip
from monitor.results import ScanRecord

STATES = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


@dataclass(frozen=True)
class Checked:
    """One address in one direction, probed now or read from the store."""

    endpoint: str
    address: str
    direction: Direction
    findings: tuple[Finding, ...]
    not_before: datetime | None = None
    not_after: datetime | None = None
    contract: str | None = None
    # read from the store: when it was measured (None: probed by this run)
    measured_at: datetime | None = None


def from_records(records: Sequence[ScanRecord]) -> list[Checked]:
    checked = []
    for record in records:
        target, leaf = record.result.target, record.chain[0] if record.chain else None
        contract = record.contract()
        checked.append(
            Checked(
                target.endpoint,
                target.address or "unresolved",
                target.direction,
                tuple(record.findings),
                leaf.not_valid_before_utc if leaf else None,
                leaf.not_valid_after_utc if leaf else None,
                contract["contract"] if contract else None,
            )
        )
    return checked


def state(checked: Sequence[Checked]) -> int:
    severity = worst(f.severity for c in checked for f in c.findings)
    return severity.exit_code if severity else 0


def _label(item: Checked) -> str:
    text = f"days_left_{item.endpoint}_{item.address}"
    if item.direction is Direction.TO_EXO:
        text += "_client"
    return "'" + _UNSAFE.sub("_", text)[:100] + "'"


def _where(item: Checked) -> str:
    side = "client" if item.direction is Direction.TO_EXO else "served"
    return f"{item.endpoint} {item.address} ({side})"


def line(text: str) -> str:
    """One line of plugin output: no pipe (it starts performance data), no control characters."""
    return clip(text.replace("|", "/").replace("\n", " "), 300)


def unknown(message: str) -> str:
    """The status line of a check that could not be carried out."""
    return f"RELAYCERT UNKNOWN - {line(message)}\n"


def perfdata(item: Checked, expiry: ExpiryThresholds, now: datetime) -> str | None:
    """Days left, with the warning and critical days ``cert.expiring`` uses for it."""
    if item.not_after is None:
        return None
    days = (item.not_after - now).total_seconds() / 86400
    warn = crit = None
    if item.not_before is not None:
        span = item.not_after - item.not_before
        warn = expiry.warning_at(span).total_seconds() / 86400
        crit = expiry.critical_at(span).total_seconds() / 86400
    # "10.00:" is the plugin range "alert below 10".
    ranges = ";".join(f"{v:.2f}:" if v is not None else "" for v in (warn, crit))
    return f"{_label(item)}={days:.2f};{ranges};;"


def render(
    checked: Sequence[Checked], expiry: Callable[[str], ExpiryThresholds], now: datetime
) -> tuple[str, int]:
    """The plugin output; ``expiry`` gives each endpoint's ``cert.expiring`` thresholds."""
    code = state(checked)
    findings = sorted(
        ((f, c) for c in checked for f in c.findings),
        key=lambda item: (-item[0].severity.rank, item[1].endpoint, item[0].rule),
    )
    serious = [(f, c) for f, c in findings if f.severity is not Severity.INFO]
    counts = {s: sum(1 for f, _ in findings if f.severity is s) for s in Severity}
    if serious:
        first, item = serious[0]
        tally = ", ".join(
            f"{counts[s]} {s.value}" for s in reversed(list(Severity)) if counts[s] and s.rank
        )
        summary = f"{_where(item)}: {first.rule}: {first.message}; {tally}"
    elif checked:
        summary = f"{len(checked)} address(es) checked, no problem"
    else:
        code, summary = 3, "no address to check (no endpoint matched, or nothing stored yet)"
    perf = [p for p in (perfdata(c, expiry(c.endpoint), now) for c in checked) if p]
    status = f"RELAYCERT {STATES[code]} - {line(summary)}"
    lines = [status + (f" | {' '.join(perf)}" if perf else "")]
    for finding, item in findings:
        severity = finding.severity.value.upper()
        lines.append(line(f"{severity} {finding.rule} {_where(item)}: {finding.message}"))
    for item in checked:
        if item.measured_at is not None:
            lines.append(line(f"MEASURED {_where(item)}: {item.measured_at:%Y-%m-%d %H:%M:%S} UTC"))
    judged: dict[str, str] = {}
    for item in checked:  # what each served certificate was judged by
        if item.contract is not None:
            judged.setdefault(item.endpoint, item.contract)
    lines += [line(f"DELIVERY {name}: judged by {text}") for name, text in judged.items()]
    return "\n".join(lines) + "\n", code
