"""Render a :class:`~monitor.reports.model.Report` as self-contained HTML (inline CSS and SVG, no
scripts, autoescaped), CSV (one row per endpoint address, formula-safe) or JSON (documented in
docs/reports.md, versioned)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from datetime import date, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from monitor.reports.daily import chart
from monitor.reports.model import Report
from monitor.reports.timeline import timeline

JSON_VERSION = 1
_ENV = Environment(
    loader=PackageLoader("monitor.reports", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html", "j2")),
    undefined=StrictUndefined,
)


def html(report: Report) -> str:
    return _ENV.get_template("report.html.j2").render(
        r=report,
        timeline=timeline(report.timeline, report.generated_at),
        chart=chart(report.daily, report.known_addresses),
    )


def _cell(value: Any) -> Any:
    """CSV text cells opened in a spreadsheet must not run formulas (certificate text is
    hostile): those starting with = + - @ (or tab, CR) get a leading '.  Numbers stay numbers
    (a negative days_left is -3.5, not '-3.5)."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        text = str(value)
        return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
    return value


CSV_COLUMNS = [
    "endpoint",
    "host",
    "port",
    "address",
    "connector",
    "status",
    "worst",
    "last_probe",
    "tls_version",
    "subject",
    "sans",
    "issuer",
    "serial",
    "sha256",
    "key",
    "signature",
    "not_before",
    "not_after",
    "days_left",
    "findings",
    "probes_attempted",
    "probes_succeeded",
    "availability_percent",
    "direction",
    "certificate_last_seen",
]


def to_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for a in report.addresses:
        c = a.certificate
        writer.writerow(
            [
                _cell(v)
                for v in [
                    a.endpoint,
                    a.host,
                    a.port,
                    a.address,
                    a.connector,
                    a.status,
                    a.worst,
                    a.last_probe.isoformat() if a.last_probe else None,
                    a.tls_version,
                    c.subject if c else None,
                    " ".join(c.sans) if c else None,
                    c.issuer if c else None,
                    c.serial if c else None,
                    c.sha256 if c else None,
                    c.key if c else None,
                    c.signature if c else None,
                    c.not_before.isoformat() if c else None,
                    c.not_after.isoformat() if c else None,
                    c.days_left if c else None,
                    "; ".join(f"{s}:{r}" for s, r, _ in a.findings),
                    a.attempts,
                    a.successes,
                    a.availability,
                    a.direction,
                    a.last_seen.isoformat() if a.last_seen else None,
                ]
            ]
        )
    return out.getvalue()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_json(report: Report) -> str:
    document = {"version": JSON_VERSION, **_plain(asdict(report))}
    for data, address in zip(document["addresses"], report.addresses, strict=True):
        data["worst"], data["availability_percent"] = address.worst, address.availability
    document["timeline"] = [{"endpoint": e, "certificate": c} for e, c in document["timeline"]]
    document["upcoming"] = [{"endpoint": e, "certificate": c} for e, c in document["upcoming"]]
    return json.dumps(document, indent=2)


def render(report: Report, fmt: str) -> str:
    return {"html": html, "csv": to_csv, "json": to_json}[fmt](report)
