"""Scan results for people: a rich table (the JSON for programs is :mod:`monitor.cli.scanjson`).

Certificate text is attacker-controlled: the table builds :class:`rich.text.Text` objects (never
markup strings) from clipped, control-character-free text.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from rich.console import Console
from rich.table import Table
from rich.text import Text

from checks.base import Direction, Severity, worst
from checks.certinfo import (
    clip,
    common_names,
    dns_sans,
    subject_text,
)
from monitor.certview import cert_info
from monitor.pipeline.records import ScanRecord

# The table's short form of a direction: which certificate, and which way mail flows.
DIRECTION_SHORT = {Direction.FROM_EXO: "served", Direction.TO_EXO: "client"}
DIRECTION_LEGEND = (
    "served: the certificate the listener serves (Exchange Online delivering to on-prem; "
    "450 4.4.317). client: the certificate the server presents when it relays through "
    "Exchange Online (550 5.7.64 ATTR36)."
)
STYLES = {
    Severity.INFO: "cyan",
    Severity.WARNING: "yellow",
    Severity.UNKNOWN: "magenta",
    Severity.CRITICAL: "bold red",
}


def _certificate_cell(record: ScanRecord, now: datetime) -> Text:
    if not record.chain:
        return Text(clip(record.result.error or "-", 120), style="dim")
    leaf = record.chain[0]
    names = common_names(leaf) or dns_sans(leaf)
    days = (leaf.not_valid_after_utc - now).total_seconds() / 86400
    text = Text(clip(names[0] if names else subject_text(leaf), 60))
    left = f"{days:.0f} days left" if days >= 0 else f"expired {-days:.0f} days ago"
    text.append(f"\n{left}, {len(record.chain)} in chain", style="dim")
    return text


def _findings_cell(record: ScanRecord) -> Text:
    text = Text()
    for finding in sorted(record.findings, key=lambda f: -f.severity.rank):
        if text:
            text.append("\n")
        text.append(f"{finding.severity.value.upper():8} ", style=STYLES[finding.severity])
        text.append(finding.rule, style="bold")
        text.append(f" {clip(finding.message, 300)}")
    return text or Text("ok", style="green")


def print_table(
    records: Sequence[ScanRecord], now: datetime, console: Console, problems_only: bool = False
) -> None:
    """Worst first; with ``problems_only`` only addresses with a warning or worse."""

    def rank(record: ScanRecord) -> int:
        top = worst(f.severity for f in record.findings)
        return top.rank if top else -1

    records = sorted(records, key=lambda r: -rank(r))
    if problems_only:
        records = [r for r in records if rank(r) >= Severity.WARNING.rank]
    table = Table(
        title=f"relaycert scan, {now:%Y-%m-%d %H:%M} UTC",
        caption=DIRECTION_LEGEND,
        show_lines=True,
        expand=True,
    )
    table.add_column("Endpoint", no_wrap=True)
    table.add_column("Direction", no_wrap=True)
    table.add_column("Address", no_wrap=True)
    table.add_column("TLS", no_wrap=True)
    table.add_column("Certificate", ratio=1)
    table.add_column("Findings", ratio=3)
    for record in records:
        target = record.result.target
        severity = worst(f.severity for f in record.findings)
        table.add_row(
            Text(
                f"{target.endpoint}\n{target.host}:{target.port}",
                style=STYLES.get(severity, "green") if severity else "green",
            ),
            Text(DIRECTION_SHORT[target.direction]),
            Text(target.address or "-"),
            Text(record.result.tls_version or record.result.status.value),
            _certificate_cell(record, now),
            _findings_cell(record),
        )
    console.print(table)


def console() -> Console:
    """The terminal's own width (rich folds the table to fit; pipes get 80 or $COLUMNS)."""
    return Console(highlight=False)


def print_file(
    path: str, chain: Sequence[x509.Certificate], record: ScanRecord, now: datetime, out: Console
) -> None:
    """``relaycert inspect``: the file's certificates in order, then the findings that apply
    to a file (no host or port: nothing was probed)."""
    table = Table(title=f"relaycert inspect {clip(path, 80)}, {now:%Y-%m-%d %H:%M} UTC")
    for column in ("#", "Subject / names", "Issuer", "Validity", "Key"):
        table.add_column(column, overflow="fold")
    for index, cert in enumerate(chain):
        info = cert_info(cert, now)
        left = (
            f"expired {-info.days_left:.0f} days ago"
            if cert.not_valid_after_utc <= now
            else f"{info.days_left:.0f} days left"
        )
        names = ", ".join(clip(n, 80) for n in info.sans[:6]) or "-"
        table.add_row(
            Text(str(index)),
            Text(f"{clip(info.subject, 120)}\n{names}"),
            Text(clip(info.issuer, 120)),
            Text(f"{info.not_before:%Y-%m-%d} to {info.not_after:%Y-%m-%d}\n{left}"),
            Text(f"{info.key}\n{info.signature or '-'}"),
        )
    out.print(table)
    out.print(_findings_cell(record))
