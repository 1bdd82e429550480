"""The instances part of ``relaycert status``: every daemon sharing the store, its site and
last heartbeat, and the sites whose endpoints no live instance probes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from rich.table import Table
from rich.text import Text

from checks import cluster as rules
from monitor.cli.output import console
from monitor.config.loader import Config
from monitor.store import cluster
from monitor.store.engine import Store


def view(config: Config, store: Store, now: datetime) -> dict[str, Any]:
    """Instances heard from in the last day, and the unwatched sites (clustered stores)."""
    if store.dialect != "postgresql":
        return {"instances": [], "unwatched_sites": []}
    live_after = now - config.instance.dead_after
    rows = cluster.instances(store, now - timedelta(days=1))
    instances = [
        {
            "name": r.name,
            "site": r.site,
            "version": r.version,
            "host": r.host,
            "pid": r.pid,
            "started_at": r.started_at,
            "last_heartbeat": r.heartbeat_at,
            "state": "stopped"
            if r.stopped_at
            else ("live" if r.heartbeat_at >= live_after else "dead"),
        }
        for r in rows
    ]
    live = [r.site for r in rows if r.stopped_at is None and r.heartbeat_at >= live_after]
    findings = rules.unwatched({e.name: e.site for e in config.endpoints}, live)
    return {"instances": instances, "unwatched_sites": [f.message for f in findings]}


def show(found: dict[str, Any], now: datetime) -> None:
    if not found["instances"]:
        return
    table = Table(title="Instances", title_justify="left")
    for column in ("Name", "Site", "Version", "Host (pid)", "Last heartbeat", "State"):
        table.add_column(column)
    for i in found["instances"]:
        style = {"live": "green", "dead": "bold red"}.get(i["state"], "dim")
        ago = (now - i["last_heartbeat"]).total_seconds()
        table.add_row(
            Text(i["name"]),
            Text(i["site"] or "(none)"),
            Text(i["version"]),
            Text(f"{i['host']} ({i['pid']})"),
            Text(f"{i['last_heartbeat']:%Y-%m-%d %H:%M:%S} ({ago:.0f} s ago)"),
            Text(i["state"], style=style),
        )
    out = console()
    out.print(table)
    for message in found["unwatched_sites"]:
        out.print(Text(f"critical: {message}", style="bold red"))
