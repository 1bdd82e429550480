"""``relaycert status``: every address's last result, failed messages and renewals, from the
store (table or JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from monitor.clock import utcnow

if TYPE_CHECKING:
    from monitor.config.loader import Config
    from monitor.store.engine import Store
    from monitor.store.reads.status import AddressStatus

NAME = "status"
HELP = "every endpoint's last result, from the store"
NEEDS_CONFIG = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("table", "json"), default="table")


def run(args: argparse.Namespace) -> int:
    from monitor.cli import instances
    from monitor.config.loader import load
    from monitor.store import captures
    from monitor.store.engine import Store
    from monitor.store.reads.renewal import renewals
    from monitor.store.reads.status import failed_total, status

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
    late = overdue_endpoints(config, rows, now)
    beat = heartbeat(config, rows, now, late)
    beat["daemon_running"] = running
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
        from monitor.cli import statustable  # rich: only for the table

        statustable.print_addresses(rows, failed, total, attempts, now, late)
        statustable.print_heartbeat(beat)
        statustable.print_captures(unattributed)
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


def heartbeat(
    config: Config, rows: list[AddressStatus], now: datetime, late: set[str]
) -> dict[str, object]:
    """When the newest probe was stored, and whether that is overdue: later than twice the
    longest endpoint interval (plus its jitter) means the daemon is not running its probes.
    ``overdue_endpoints``: ``late``, the endpoints whose own newest probe is that late for
    their own interval (:func:`overdue_endpoints`), while others are probed (their job fails:
    the daemon's log says why)."""
    last = max((r.last_probe for r in rows), default=None)
    every = max(config.endpoint_interval(e) for e in config.endpoints)
    allowed = every * 2 + config.daemon.jitter_for(every)
    overdue = last is None or now - last > allowed
    return {
        "last_probe": last,
        "expected_every_s": every.total_seconds(),
        "overdue": overdue,
        "overdue_endpoints": sorted(late),
    }


def overdue_endpoints(config: Config, rows: list[AddressStatus], now: datetime) -> set[str]:
    """The endpoints whose newest probe (of any of their addresses and directions) is later
    than twice their interval (plus jitter): what is shown for them is old, not current.  An
    address the endpoint no longer resolves to keeps its last row, which never makes a probed
    endpoint overdue; endpoints no longer configured are not judged."""
    newest: dict[str, datetime] = {}
    for row in rows:
        newest[row.endpoint] = max(row.last_probe, newest.get(row.endpoint, row.last_probe))
    late = set()
    for endpoint in config.endpoints:
        last = newest.get(endpoint.name)
        every = config.endpoint_interval(endpoint)
        if last is not None and now - last > every * 2 + config.daemon.jitter_for(every):
            late.add(endpoint.name)
    return late


def exit_code(rows: list[AddressStatus], beat: dict[str, object]) -> int:
    """Monitoring-plugin convention over the open alerts; UNKNOWN when no daemon is probing,
    or some endpoint's results are overdue."""
    from checks.base import Severity, worst

    severities = [Severity(r.open_alert) for r in rows if r.open_alert]
    severity = worst(severities)
    code = severity.exit_code if severity else 0
    return 3 if (beat["overdue"] or beat.get("overdue_endpoints")) and code != 2 else code
