"""The table of ``relaycert status`` (rich): every address's last result, the delivery
contracts, failed messages, renewals, the newest probe, the unattributed captures."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from checks.base import Direction
from checks.certinfo import clip
from monitor.cli.output import DIRECTION_LEGEND, DIRECTION_SHORT, console

if TYPE_CHECKING:
    from monitor.store.captures import CaptureStatus
    from monitor.store.reads.renewal import RenewalStatus
    from monitor.store.reads.status import AddressStatus, FailedMessage

COLUMNS = (
    "Endpoint",
    "Direction",
    "Address",
    "Last probe",
    "Probe",
    "Worst finding",
    "Open alert",
    "Days left",
    "Last success",
)


def print_heartbeat(beat: dict[str, object]) -> None:
    late = beat.get("overdue_endpoints")
    if isinstance(late, list) and late and not beat["overdue"]:
        names = ", ".join(str(name) for name in late)
        console().print(
            Text(
                f"Not probed on time: {names}: their results above are old, not current; "
                "the daemon's log says why (events probe.error, probe.internal_error)",
                style="bold magenta",
            )
        )
    last = beat["last_probe"]
    when = f"{last:%Y-%m-%d %H:%M} UTC" if isinstance(last, datetime) else "never"
    if beat["overdue"]:
        console().print(
            Text(
                f"Newest probe: {when}: OVERDUE (expected every "
                f"{beat['expected_every_s']:.0f} s); is `relaycert run` running?",
                style="bold magenta",
            )
        )
    elif beat.get("daemon_running"):
        console().print(Text(f"Newest probe: {when} (a daemon is running; on time)"))
    else:
        console().print(
            Text(
                f"Newest probe: {when}, from a one-shot scan or an earlier daemon: no daemon "
                "is running against this store now (start `relaycert run`)",
                style="magenta",
            )
        )


def print_addresses(
    rows: list[AddressStatus],
    failed: list[FailedMessage],
    total: int,
    attempts: list[RenewalStatus],
    now: datetime,
    late: set[str],
) -> None:
    out = console()
    table = Table(title=f"relaycert status, {now:%Y-%m-%d %H:%M} UTC", caption=DIRECTION_LEGEND)
    for column in COLUMNS:
        table.add_column(column)
    for r in rows:
        table.add_row(
            Text(r.endpoint),
            Text(DIRECTION_SHORT[Direction(r.direction)]),
            Text(r.address or "-"),
            Text(
                f"{r.last_probe:%Y-%m-%d %H:%M}" + (" OVERDUE" if r.endpoint in late else ""),
                style="bold magenta" if r.endpoint in late else "",
            ),
            Text(
                ("measured" if r.status == "ok" else r.status)
                + (
                    f" (last seen {r.last_seen:%Y-%m-%d %H:%M}, not measured since)"
                    if r.last_seen
                    else ""
                )
            ),
            Text(f"{r.worst_finding} {r.worst_rule}" if r.worst_rule else "-"),
            Text(r.open_alert or "-"),
            Text(f"{r.days_left:.1f}" if r.days_left is not None else "-"),
            Text(f"{r.last_ok:%Y-%m-%d %H:%M}" if r.last_ok else "never"),
        )
    out.print(table)
    contracts = {r.endpoint: r.contract for r in rows if r.contract}
    if contracts:
        out.print(Text("Delivery from Exchange Online judged by:"))
        for endpoint, contract in contracts.items():
            out.print(Text(f"  {endpoint}: {contract}"))
    if failed:
        shown = f" (the newest {len(failed)} below)" if total > len(failed) else ""
        out.print(Text(f"{total} message(s) could not be delivered{shown}:", style="bold red"))
        for m in failed:
            out.print(
                Text(
                    f"  {m.channel}: {m.kind} {m.rule} {m.endpoint} after "
                    f"{m.attempts} attempt(s): {clip(m.error or '', 200)}"
                )
            )
    for attempt in attempts[:5]:
        style = "green" if attempt.outcome in ("verified", "dry_run", "skipped") else "bold red"
        out.print(
            Text(
                f"renewal {attempt.name} {attempt.started_at:%Y-%m-%d %H:%M}: "
                f"{attempt.outcome}: {clip(attempt.detail or '', 200)}",
                style=style,
            )
        )
    if not rows:
        out.print("Nothing probed yet: run `relaycert scan` or `relaycert run`.")


def print_captures(unattributed: list[CaptureStatus]) -> None:
    """Messages at the capture listener that no valid token attributes to an outbound check:
    test sends, strays, forgeries.  They never change an endpoint's result."""
    if not unattributed:
        return
    out = console()
    out.print(
        Text(
            f"{len(unattributed)} capture(s) attributed to no check (never an endpoint's result):",
            style="bold",
        )
    )
    for c in unattributed:
        verdict = "; ".join(clip(f, 160) for f in c.findings[:3]) or "no finding"
        why = "test send" if c.kind == "test" else f"unattributed: {c.reason or 'no token'}"
        out.print(
            Text(
                f"  {c.at:%Y-%m-%d %H:%M} from {c.peer} (EHLO {clip(c.ehlo or '-', 80)}), "
                f"{c.tls_version or 'no TLS'}, client certificate "
                f"{(c.leaf_sha256 or 'none')[:16]} ({clip(why, 120)}): {verdict}"
            )
        )
