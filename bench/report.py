"""Benchmark: compliance report generation from a store with a long history.

    .venv/bin/python bench/report.py [--addresses 2000] [--days 90] [--period 30d]

Builds a SQLite store shaped exactly as the daemon writes it when probing every address hourly
for ``--days`` days: observations stored on change with a daily heartbeat (so one row per address
per day, plus a row at each renewal), per-day probe counters (24 a day), drift findings at each
renewal, warnings on a tenth of the addresses, alerts opened and resolved.  Then, in a fresh
process (so memory is the report's alone), it gathers the report once over ``--period`` (30 days
by default) and renders HTML, CSV and JSON from it, and prints the time and peak RSS.  Targets on
this 2-core machine for 2000 addresses and 90 days: under 10 s and 300 MB for the 30-day report,
under 5 s and 250 MB for ``--period 90d``.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402
from sqlalchemy import insert  # noqa: E402
from sqlmodel import col  # noqa: E402

from checks.certinfo import fingerprint  # noqa: E402
from monitor.demo import pki  # noqa: E402
from monitor.store.engine import Store  # noqa: E402
from monitor.store.models import CertificateRow, FindingRow, ObservationRow, ProbeDayRow  # noqa: E402


def config_text(count: int, db: Path) -> str:
    endpoints = "".join(
        f'[[endpoints]]\nname = "e{i}"\nhost = "mail{i}.contoso.com"\nport = 25\n'
        f'connector = "relay"\naddresses = ["127.0.{1 + i // 250}.{1 + i % 250}"]\n'
        for i in range(count)
    )
    return (
        '[tenant]\nname = "Bench"\naccepted_domains = ["contoso.com"]\n'
        '[[connectors]]\nname = "relay"\ntls_sender_certificate_name = "*.contoso.com"\n'
        f'[database]\nurl = "sqlite:///{db}"\n' + endpoints
    )


def populate(folder: Path, count: int, days: int) -> Path:
    now = datetime.now(UTC)
    start = now - timedelta(days=days)
    config = folder / "relaycert.toml"
    config.write_text(config_text(count, folder / "bench.db"))
    store = Store.open(f"sqlite:///{folder / 'bench.db'}")
    root = pki.make_ca("Bench Root")
    sub = pki.make_ca("Bench Issuing CA", root)
    key = pki.new_key("ec256")
    old = [
        pki.make_leaf(
            sub, [f"mail{i}.contoso.com"], key=key, not_before=start - timedelta(days=30), days=days
        )
        for i in range(50)
    ]
    new = [
        pki.make_leaf(
            sub,
            [f"mail{i}.contoso.com"],
            key=key,
            not_before=start + timedelta(days=days // 2),
            days=90,
        )
        for i in range(50)
    ]
    prints = {id(c): fingerprint(c.cert) for c in old + new + [sub]}
    with store.engine.begin() as conn:
        conn.execute(
            insert(CertificateRow),
            [
                {
                    "sha256": prints[id(c)],
                    "der": c.cert.public_bytes(Encoding.DER),
                    "subject": c.cert.subject.rfc4514_string(),
                    "issuer": c.cert.issuer.rfc4514_string(),
                    "serial": format(c.cert.serial_number, "x"),
                    "not_before": c.cert.not_valid_before_utc,
                    "not_after": c.cert.not_valid_after_utc,
                    "first_seen": start,
                }
                for c in old + new + [sub]
            ],
        )
        from monitor.store.models import AlertRow, EndpointRow

        conn.execute(
            insert(EndpointRow),
            [
                {
                    "name": f"e{i}",
                    "host": f"mail{i}.contoso.com",
                    "port": 25,
                    "mode": "starttls",
                    "connector": "relay",
                    "created_at": start,
                }
                for i in range(count)
            ],
        )
        for i in range(count):
            endpoint_id, address = i + 1, f"127.0.{1 + i // 250}.{1 + i % 250}"
            rows, warn = [], i % 10 == 0
            for day in range(days):
                at = start + timedelta(days=day, minutes=i % 60)
                leaf = (old if day < days // 2 else new)[i % 50]
                chain = [prints[id(leaf)], prints[id(sub)]]
                rows.append(
                    {
                        "endpoint_id": endpoint_id,
                        "address": address,
                        "started_at": at,
                        "last_seen_at": at + timedelta(hours=23),
                        "repeats": 24,
                        "signature": f"{chain[0]}{day >= days // 2}",
                        "duration_ms": 40.0,
                        "status": "ok",
                        "ehlo": ["mx", "STARTTLS"],
                        "chain": chain,
                        "leaf_sha256": chain[0],
                        "timings": {"total": 40.0},
                        "tls_version": "TLSv1.3",
                        "cipher": "TLS_AES_256_GCM_SHA384",
                        "banner": "220 mx ESMTP",
                        "worst": "warning" if warn else None,
                    }
                )
            ids = (
                conn.execute(
                    insert(ObservationRow).returning(
                        col(ObservationRow.id), sort_by_parameter_order=True
                    ),
                    rows,
                )
                .scalars()
                .all()
            )
            findings = (
                [
                    {
                        "observation_id": oid,
                        "rule": "cert.expiring",
                        "severity": "warning",
                        "message": "leaf expires in 20 days",
                    }
                    for oid in ids
                ]
                if warn
                else []
            )
            renewal = ids[days // 2]
            findings += [
                {"observation_id": renewal, "rule": rule, "severity": "info", "message": "renewed"}
                for rule in ("drift.certificate_changed", "drift.key_changed")
            ]
            conn.execute(insert(FindingRow), findings)
            conn.execute(
                insert(ProbeDayRow),
                [
                    {
                        "endpoint_id": endpoint_id,
                        "address": address,
                        "day": (start + timedelta(days=d)).date(),
                        "attempts": 24,
                        "successes": 24 - (d % 30 == 0),
                    }
                    for d in range(days)
                ],
            )
            if warn:
                conn.execute(
                    insert(AlertRow),
                    [
                        {
                            "endpoint_id": endpoint_id,
                            "address": address,
                            "rule": "cert.expiring",
                            "severity": "warning",
                            "status": "resolved",
                            "streak": 3,
                            "message": "x",
                            "first_seen": now - timedelta(days=10),
                            "opened_at": now - timedelta(days=10),
                            "resolved_at": now - timedelta(days=2),
                            "transitions": 2,
                        }
                    ],
                )
    counts = store.counts()
    store.close()
    print(
        f"store: {counts['observation']} observations, {counts['finding']} findings, "
        f"{count * days} daily probe counters ({count} addresses, {days} days hourly)"
    )
    return config


def measure(config: Path, output: Path, period_days: int) -> None:
    from monitor.config.loader import load
    from monitor.reports.build import build
    from monitor.reports.render import render

    started = time.perf_counter()
    cfg = load(config)
    store = Store.open(cfg.database_url())
    report = build(cfg, store, timedelta(days=period_days), datetime.now(UTC))
    built = time.perf_counter()
    sizes = {}
    for fmt in ("html", "csv", "json"):
        text = render(report, fmt)
        (output / f"report.{fmt}").write_text(text)
        sizes[fmt] = len(text) // 1024
    elapsed = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    store.close()
    print(
        f"report: gathered in {built - started:.2f} s, all three formats in {elapsed:.2f} s "
        f"(html {sizes['html']} KiB, csv {sizes['csv']} KiB, json {sizes['json']} KiB)"
    )
    print(f"peak RSS of the report process: {rss:.1f} MB")
    print(f"addresses in report: {len(report.addresses)}; verdict: {report.verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addresses", type=int, default=2000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--period", default="30d", help="the report's period, e.g. 90d")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    period_days = int(args.period.rstrip("d"))
    if args.measure:
        measure(args.measure, args.measure.parent, period_days)
        return 0
    folder = Path(tempfile.mkdtemp(prefix="relaycert-bench-report-"))
    t0 = time.perf_counter()
    config = populate(folder, args.addresses, args.days)
    print(f"history written in {time.perf_counter() - t0:.1f} s at {folder}")
    return subprocess.run(
        [sys.executable, __file__, "--measure", str(config), "--period", args.period],
        check=False,
    ).returncode


if __name__ == "__main__":
    sys.exit(main())
