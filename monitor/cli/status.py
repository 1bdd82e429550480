"""``relaycert status``: every address's last result, failed messages and renewals, from the
store (table or JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import datetime
from typing import Any

from rich.table import Table
from rich.text import Text

from checks.base import Direction, Severity, worst
from checks.certinfo import clip
from monitor.cli import instances
from monitor.cli.output import DIRECTION_LEGEND, DIRECTION_SHORT, console
from monitor.clock import utcnow
from monitor.config.loader import Config, load
from monitor.store import captures
from monitor.store.captures import CaptureStatus
from monitor.store.engine import Store
from monitor.store.reads.renewal import RenewalStatus, renewals
from monitor.store.reads.status import AddressStatus, FailedMessage, failed_total, status

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


def run(args: argparse.Namespace) -> int:
    config = load(args.config)
    store = Store.open(config.database_url())
    now = utcnow()
    try:
        rows, failed = status(store, now)
        total = failed_total(store)
        attempts = renewals(store)
        unattributed = captures.recent(store)
        cluster = instances.view(config, store, now)
        running = cluster_running(store, cluster)
    finally:
        store.close()
    beat = heartbeat(config, rows, now)
    beat["daemon_running"] = running
    late = {r.endpoint for r in rows if row_overdue(config, r, now)}
    code = exit_code(rows, beat)
    if cluster["unwatched_sites"]:
        code = max(code, 2)  # endpoints nobody probes
    if args.format == "json":
        doc = {
            "generated_at": now.isoformat(),
            "exit_code": code,
            "heartbeat": beat,
            "addresses": [{**asdict(r), "overdue": r.endpoint in late} for r in rows],
            "failed_messages": [asdict(m) for m in failed],
            "failed_messages_total": total,
            "renewals": [asdict(r) for r in attempts],
            "unattributed_captures": [asdict(c) for c in unattributed],
            **cluster,
        }
        sys.stdout.write(json.dumps(doc, indent=2, default=_iso) + "\n")
    else:
        _print(rows, failed, total, attempts, now, late)
        _print_heartbeat(beat)
        _print_captures(unattributed)
        instances.show(cluster, now)
    return code


def cluster_running(store: Store, cluster: dict[str, Any]) -> bool:
    """Whether a daemon probes into this store now: a live instance (PostgreSQL), or the
    daemon's lock held (SQLite)."""
    from monitor.store.cluster import daemon_holds_lock

    if store.dialect == "postgresql":
        return any(i["state"] == "live" for i in cluster["instances"])
    return daemon_holds_lock(store)


def _iso(value: object) -> str:
    """Times as ISO 8601 with a "T", like the scan JSON."""
    return value.isoformat() if isinstance(value, datetime) else str(value)


def heartbeat(config: Config, rows: list[AddressStatus], now: datetime) -> dict[str, object]:
    """When the newest probe was stored, and whether that is overdue: later than twice the
    longest endpoint interval (plus its jitter) means the daemon is not running its probes.
    ``overdue_endpoints``: the endpoints whose own newest probe is that late for their own
    interval, while others are probed (their job fails: the daemon's log says why)."""
    last = max((r.last_probe for r in rows), default=None)
    every = max(config.endpoint_interval(e) for e in config.endpoints)
    allowed = every * 2 + config.daemon.jitter_for(every)
    overdue = last is None or now - last > allowed
    late = sorted({r.endpoint for r in rows if row_overdue(config, r, now)})
    return {
        "last_probe": last,
        "expected_every_s": every.total_seconds(),
        "overdue": overdue,
        "overdue_endpoints": late,
    }


def row_overdue(config: Config, row: AddressStatus, now: datetime) -> bool:
    """Whether this address's newest probe is later than twice its endpoint's interval (plus
    jitter): what is shown for it is old, not current.  Endpoints no longer configured are
    not judged."""
    endpoint = next((e for e in config.endpoints if e.name == row.endpoint), None)
    if endpoint is None:
        return False
    every = config.endpoint_interval(endpoint)
    return now - row.last_probe > every * 2 + config.daemon.jitter_for(every)


def exit_code(rows: list[AddressStatus], beat: dict[str, object]) -> int:
    """Monitoring-plugin convention over the open alerts; UNKNOWN when no daemon is probing,
    or some endpoint's results are overdue."""
    severities = [Severity(r.open_alert) for r in rows if r.open_alert]
    severity = worst(severities)
    code = severity.exit_code if severity else 0
    return 3 if (beat["overdue"] or beat.get("overdue_endpoints")) and code != 2 else code


def _print_heartbeat(beat: dict[str, object]) -> None:
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


def _print(
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


def _print_captures(unattributed: list[CaptureStatus]) -> None:
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
