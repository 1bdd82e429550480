"""The report from the store: read (:mod:`.query`, :mod:`.daily`, captures, renewals) and
assemble (:mod:`.assemble`, pure) over a period."""

from __future__ import annotations

from datetime import datetime, timedelta

from monitor.config.loader import Config
from monitor.reports import daily, query
from monitor.reports.assemble import assemble
from monitor.reports.model import Report
from monitor.store import captures
from monitor.store.engine import Store
from monitor.store.reads.renewal import renewals


def build(config: Config, store: Store, period: timedelta, now: datetime) -> Report:
    """Read the store and assemble the report over ``period`` up to ``now``."""
    start = now - period
    names = [e.name for e in config.endpoints] + ["(tenant)"]  # tenant drift, if the daemon saw any
    rows = query.read(store, names, start, now)
    report = assemble(config, rows, renewals(store, since=start, limit=500), start, now)
    report.unattributed = [
        {
            "at": c.at,
            "peer": c.peer,
            "ehlo": c.ehlo,
            "kind": c.kind,
            "reason": c.reason,
            "leaf_sha256": c.leaf_sha256,
            "worst": c.worst,
        }
        for c in captures.recent(store, limit=20, since=start)
    ]
    report.unattributed_total = captures.unattributed_count(store, start)
    report.daily, report.known_addresses = daily.daily(store, start, now)
    return report
