"""Monitoring-plugin output (Nagios, Icinga 2, Checkmk classic checks, Naemon):

    RELAYCERT CRITICAL - scanner 127.0.0.1 (served): ... | 'days_left_scanner_127.0.0.1'=1;30:;7:;;
    CRITICAL connector.name_not_covered scanner 127.0.0.1 (served): ...

One status line (service output and performance data), then the long output, one finding per
line, worst first.  Performance labels are quoted and made of safe characters only; values are
days without a unit (the plugin guidelines know no "days" unit); thresholds are the
``[expiry]`` warning and critical days as "alert below" ranges (``30:``).  The exit code is
the plugin convention (0, 1, 2, 3).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from checks.base import Direction, Severity
from checks.certinfo import clip
from monitor.config.loader import Config
from monitor.pipeline.records import ScanRecord, exit_code

STATES = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def _label(record: ScanRecord) -> str:
    target = record.result.target
    text = f"days_left_{target.endpoint}_{target.address or 'unresolved'}"
    if target.direction is Direction.TO_EXO:
        text += "_client"
    return "'" + _UNSAFE.sub("_", text)[:100] + "'"


def _where(record: ScanRecord) -> str:
    target = record.result.target
    side = "client" if target.direction is Direction.TO_EXO else "served"
    return f"{target.endpoint} {target.address or 'unresolved'} ({side})"


def _line(text: str) -> str:
    """One line of plugin output: no pipe (it starts performance data), no control characters."""
    return clip(text.replace("|", "/").replace("\n", " "), 300)


def render(records: Sequence[ScanRecord], config: Config, now: datetime) -> tuple[str, int]:
    code = exit_code(records)
    findings = sorted(
        ((f, r) for r in records for f in r.findings),
        key=lambda item: -item[0].severity.rank,
    )
    serious = [(f, r) for f, r in findings if f.severity is not Severity.INFO]
    counts = {s: sum(1 for f, _ in findings if f.severity is s) for s in Severity}
    if serious:
        first, record = serious[0]
        tally = ", ".join(
            f"{counts[s]} {s.value}" for s in reversed(list(Severity)) if counts[s] and s.rank
        )
        summary = f"{_where(record)}: {first.rule}: {first.message}; {tally}"
    else:
        summary = f"{len(records)} address(es) checked, no problem"
    warn, crit = config.expiry.warning_days, config.expiry.critical_days
    perf = []
    for record in records:
        if record.chain:
            days = (record.chain[0].not_valid_after_utc - now).total_seconds() / 86400
            # "30:" is the plugin range "alert below 30".
            perf.append(f"{_label(record)}={days:.2f};{warn:g}:;{crit:g}:;;")
    status = f"RELAYCERT {STATES[code]} - {_line(summary)}"
    lines = [status + (f" | {' '.join(perf)}" if perf else "")]
    for finding, record in findings:
        severity = finding.severity.value.upper()
        lines.append(_line(f"{severity} {finding.rule} {_where(record)}: {finding.message}"))
    judged: dict[str, str] = {}
    for record in records:  # what each served certificate was judged by
        contract = record.contract()
        if contract is not None:
            judged.setdefault(record.result.target.endpoint, contract["contract"])
    lines += [_line(f"DELIVERY {name}: judged by {text}") for name, text in judged.items()]
    return "\n".join(lines) + "\n", code
