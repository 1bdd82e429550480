"""The daemon's live status page, ``/`` on the ``[daemon] metrics_listen`` listener: read only,
server-rendered (Jinja2, autoescaped), no JavaScript, refreshing itself every minute.

It shows what the compliance report computes, for the last day: per connector and direction
the verdict (works / broken / unmeasured, with the error Exchange Online returns), each
address's certificate and days left, the newest probe's age, open alerts with their age,
unattributed captures, the instances sharing the store, and a link to the newest archived
report (``/report``).  Every certificate field is attacker-controlled text: the template
autoescapes, and the page is served with a Content-Security-Policy that allows no script, no
inline style and nothing from elsewhere (``/status.css`` is the only resource).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from checks.base import Severity
from monitor.config.loader import Config
from monitor.store import captures, cluster
from monitor.store.engine import Store
from monitor.store.reads import status

if TYPE_CHECKING:
    import jinja2

REFRESH_SECONDS = 60
PERIOD = timedelta(days=1)
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
# The archived report has its own inline styles and an inline SVG, and no script.
REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class OpenAlert:
    endpoint: str
    address: str
    direction: str
    rule: str
    severity: str
    age: str
    message: str


def ago(moment: datetime | None, now: datetime) -> str:
    """``5 min ago``, ``3 h ago``, ``2 days ago``; ``never``."""
    if moment is None:
        return "never"
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def _alerts(store: Store, now: datetime) -> list[OpenAlert]:
    found = [
        OpenAlert(
            endpoint,
            a.address,
            a.direction,
            a.rule,
            a.severity,
            ago(a.opened_at or a.first_seen, now),
            a.message,
        )
        for endpoint, a in status.open_alert_rows(store)
    ]
    found.sort(key=lambda a: (-Severity(a.severity).rank, a.endpoint, a.rule))
    return found


def newest_report(config: Config) -> Path | None:
    """The newest archived HTML report, if the daemon archives them."""
    folder = config.resolve_path(config.reports.archive_dir)
    try:
        reports = sorted(folder.glob("*.html"), key=lambda p: p.stat().st_mtime)
    except OSError:
        return None
    return reports[-1] if reports else None


def context(config: Config, store: Store, now: datetime) -> dict[str, Any]:
    """What the page shows (plain data; the template renders it)."""
    from monitor.reports.build import build

    report = build(config, store, PERIOD, now)
    newest = max((a.last_probe for a in report.addresses if a.last_probe), default=None)
    instances = []
    if store.dialect == "postgresql":
        live_after = now - config.instance.dead_after
        for row in cluster.instances(store, now - timedelta(days=1)):
            state = (
                "stopped"
                if row.stopped_at
                else ("live" if row.heartbeat_at >= live_after else "dead")
            )
            instances.append(
                {
                    "name": row.name,
                    "site": row.site or "",
                    "state": state,
                    "heartbeat": ago(row.heartbeat_at, now),
                }
            )
    return {
        "report": report,
        "now": now,
        "newest_probe": ago(newest, now),
        "alerts": _alerts(store, now),
        "unattributed": captures.recent(store, limit=10),
        "instances": instances,
        "archived": newest_report(config) is not None,
        "refresh": REFRESH_SECONDS,
        "ago": lambda moment: ago(moment, now),
    }


@cache
def _environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(config: Config, store: Store, now: datetime) -> str:
    return _environment().get_template("status.html.j2").render(**context(config, store, now))


def stylesheet() -> bytes:
    return (TEMPLATES / "status.css").read_bytes()
