"""Scan results for people: a rich table (the JSON for programs is :mod:`monitor.cli.scanjson`).

Certificate text is attacker-controlled: the table builds :class:`rich.text.Text` objects (never
markup strings) from clipped, control-character-free text.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from checks.base import Direction, Finding, Severity, worst
from checks.certinfo import clip, common_names, days_text, dns_sans, subject_text
from monitor.certview import cert_info
from monitor.results import ScanRecord

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


# From this width the table has room for the certificate and the findings; below it each
# endpoint is a block of lines (a column is never squeezed to nothing).
TABLE_WIDTH = 160
MESSAGE_LIMIT = 2000  # a finding's message is shown whole up to this (it carries the advice)


def _certificate_text(record: ScanRecord, now: datetime) -> tuple[str, str]:
    """The leaf's first name and "N days left, M in chain", or the error when none."""
    if not record.chain:
        error = record.result.error
        return ("none" + (f" ({clip(error, 300)})" if error else "")), ""
    leaf = record.chain[0]
    names = common_names(leaf) or dns_sans(leaf)
    left = leaf.not_valid_after_utc - now
    when = (
        f"{days_text(left)} left"
        if left.total_seconds() >= 0
        else f"expired {days_text(-left)} ago"
    )
    return clip(
        names[0] if names else subject_text(leaf), 200
    ), f"{when}, {len(record.chain)} in chain"


def _certificate_cell(record: ScanRecord, now: datetime) -> Text:
    name, detail = _certificate_text(record, now)
    if not detail:
        return Text(name, style="dim")
    return Text(name).append(f"\n{detail}", style="dim")


def _ordered(findings: Sequence[Finding]) -> list[Finding]:
    """Worst first, then by rule id: the same order on every run."""
    return sorted(findings, key=lambda f: (-f.severity.rank, f.rule, f.message))


def _findings_cell(record: ScanRecord) -> Text:
    text = Text()
    for finding in _ordered(record.findings):
        if text:
            text.append("\n")
        text.append(f"{finding.severity.value.upper():8} ", style=STYLES[finding.severity])
        text.append(finding.rule, style="bold")
        text.append(f" {clip(finding.message, MESSAGE_LIMIT)}")
    return text or Text("ok", style="green")


def _rank(record: ScanRecord) -> int:
    top = worst(f.severity for f in record.findings)
    return top.rank if top else -1


def _heading(record: ScanRecord) -> str:
    target = record.result.target
    return "  ".join(
        (
            target.endpoint,
            DIRECTION_SHORT[target.direction],
            f"{target.host}:{target.port}",
            target.address or "-",
            record.result.tls_version or record.result.status.value,
        )
    )


def print_table(
    records: Sequence[ScanRecord], now: datetime, console: Console, problems_only: bool = False
) -> None:
    """Worst first; with ``problems_only`` only addresses with a warning or worse.

    Laid out for the width there is: a table from :data:`TABLE_WIDTH` columns, one block of
    lines per endpoint below it (each finding wrapped under its rule id), and plain lines for a
    pipe or a file, one finding per line, so ``grep`` finds a rule with its whole message.
    """
    records = sorted(
        records,
        key=lambda r: (
            -_rank(r),
            r.result.target.endpoint,
            r.result.target.direction.value,
            r.result.target.address or "",
            r.result.target.port,
        ),
    )
    if problems_only:
        records = [r for r in records if _rank(r) >= Severity.WARNING.rank]
    title = f"relaycert scan, {now:%Y-%m-%d %H:%M} UTC"
    if not console.is_terminal or console.width < TABLE_WIDTH:
        _print_blocks(records, now, console, title, wrap=console.is_terminal)
        return
    table = Table(title=title, caption=DIRECTION_LEGEND, show_lines=True, expand=True)
    table.add_column("Endpoint", no_wrap=True)
    table.add_column("Direction", no_wrap=True)
    table.add_column("Address", no_wrap=True)
    table.add_column("TLS", no_wrap=True)
    cells = [_certificate_cell(record, now) for record in records]
    widest = max((len(line) for cell in cells for line in cell.plain.splitlines()), default=0)
    table.add_column("Certificate", width=min(max(widest, 12), 48), overflow="fold")
    table.add_column("Findings", ratio=1, overflow="fold")
    for record, cell in zip(records, cells, strict=True):
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
            cell,
            _findings_cell(record),
        )
    console.print(table)


def _print_blocks(
    records: Sequence[ScanRecord], now: datetime, out: Console, title: str, wrap: bool
) -> None:
    """One block per endpoint: a heading line, the certificate, each finding.  With ``wrap``
    (a terminal) a finding's message is wrapped under its rule id; without (a pipe, a file,
    cron mail) every finding is one line."""

    def line(text: Text, indent: int) -> None:
        if wrap:
            out.print(Padding(text, (0, 0, 0, indent)))
        else:
            out.print(Text(" " * indent).append(text), soft_wrap=True)

    out.print(Text(title, style="bold"), soft_wrap=True)
    for record in records:
        severity = worst(f.severity for f in record.findings)
        out.print()
        line(
            Text(_heading(record), style=STYLES.get(severity, "green") if severity else "green"), 0
        )
        name, detail = _certificate_text(record, now)
        line(Text("certificate: ").append(name + (f" ({detail})" if detail else "")), 2)
        if not record.findings:
            line(Text("ok", style="green"), 2)
        for finding in _ordered(record.findings):
            head = Text(f"{finding.severity.value.upper()} ", style=STYLES[finding.severity])
            head.append(finding.rule, style="bold")
            message = clip(finding.message, MESSAGE_LIMIT)
            if wrap:
                line(head, 2)
                line(Text(message), 4)
            else:
                line(head.append(f": {message}"), 2)
    out.print()
    out.print(Text(DIRECTION_LEGEND, style="dim"), soft_wrap=not wrap)


def console() -> Console:
    """The terminal's own width (pipes get 80 or $COLUMNS; :func:`print_table` lays out for it)."""
    out = Console(highlight=False)
    # A pipe, a file or cron mail: lines are not folded at 80 columns (grep sees whole lines).
    out.soft_wrap = not out.is_terminal
    return out


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
