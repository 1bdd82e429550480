"""The service commands: ``run``, ``status``, ``accept`` and ``notify-test``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from checks.certinfo import clip
from monitor import logs
from monitor.config.loader import Config, load
from monitor.errors import ConfigError, DeliveryError
from monitor.service.daemon import Daemon, build_channels
from monitor.store.engine import Store
from monitor.store.queries import accept, renewals, status
from notifications.base import Notification


def _open(config: Config) -> Store:
    return Store.open(config.database_url())


def run_once(path: Path, config: Config) -> None:
    """One daemon cycle (what ``run --once`` and the demo do)."""
    logs.setup(config.daemon.log_format, config.daemon.log_level)
    store = _open(config)
    try:
        asyncio.run(Daemon(path, store, config).run_once())
    finally:
        store.close()


def run_command(args: argparse.Namespace) -> int:
    config = load(args.config)
    if args.once:
        run_once(args.config, config)
        return 0
    logs.setup(config.daemon.log_format, config.daemon.log_level)
    store = _open(config)

    async def main() -> None:
        await Daemon(args.config, store, config).serve()

    try:
        asyncio.run(main())
    finally:
        store.close()
    return 0


def status_command(args: argparse.Namespace) -> int:
    config = load(args.config)
    store = _open(config)
    now = datetime.now(UTC)
    try:
        rows, failed = status(store, now)
        attempts = renewals(store)
    finally:
        store.close()
    if args.format == "json":
        doc = {
            "generated_at": now.isoformat(),
            "addresses": [asdict(r) for r in rows],
            "failed_messages": [asdict(m) for m in failed],
            "renewals": [asdict(r) for r in attempts],
        }
        sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
        return 0
    console = Console(width=max(100, Console().width), highlight=False)
    table = Table(title=f"relaycert status, {now:%Y-%m-%d %H:%M} UTC")
    for column in (
        "Endpoint",
        "Address",
        "Last probe",
        "Result",
        "Worst finding",
        "Open alert",
        "Days left",
        "Last success",
    ):
        table.add_column(column)
    for r in rows:
        table.add_row(
            Text(r.endpoint),
            Text(r.address or "-"),
            Text(f"{r.last_probe:%Y-%m-%d %H:%M}"),
            Text(r.status),
            Text(f"{r.worst_finding} {r.worst_rule}" if r.worst_rule else "-"),
            Text(r.open_alert or "-"),
            Text(f"{r.days_left:.1f}" if r.days_left is not None else "-"),
            Text(f"{r.last_ok:%Y-%m-%d %H:%M}" if r.last_ok else "never"),
        )
    console.print(table)
    if failed:
        console.print(Text(f"{len(failed)} message(s) could not be delivered:", style="bold red"))
        for m in failed:
            console.print(
                Text(
                    f"  {m.channel}: {m.kind} {m.rule} {m.endpoint} after "
                    f"{m.attempts} attempt(s): {clip(m.error or '', 200)}"
                )
            )
    for attempt in attempts[:5]:
        style = "green" if attempt.outcome in ("verified", "dry_run", "skipped") else "bold red"
        console.print(
            Text(
                f"renewal {attempt.name} {attempt.started_at:%Y-%m-%d %H:%M}: "
                f"{attempt.outcome}: {clip(attempt.detail or '', 200)}",
                style=style,
            )
        )
    if not rows:
        console.print("Nothing probed yet: run `relaycert scan` or `relaycert run`.")
    return 0


def accept_command(args: argparse.Namespace) -> int:
    config = load(args.config)
    if config.endpoint(args.endpoint) is None:
        known = ", ".join(e.name for e in config.endpoints)
        raise ConfigError(f"{args.config}: no endpoint named {args.endpoint} (known: {known})")
    store = _open(config)
    try:
        accepted = accept(store, args.endpoint, datetime.now(UTC))
    finally:
        store.close()
    for address, sha in accepted:
        print(f"accepted {args.endpoint} {address}: {sha}")
    return 0


def test_notification(channel: str) -> Notification:
    return Notification(
        kind="test",
        severity="info",
        rule="relaycert.test",
        title="Test message from relaycert",
        endpoint="test",
        host="relaycert.invalid",
        port=25,
        address="",
        connector=None,
        message=f"If you can read this, the channel '{channel}' works.",
        at=datetime.now(UTC).isoformat(),
        key=f"relaycert:test:{uuid.uuid4().hex}",
    )


def notify_test_command(args: argparse.Namespace) -> int:
    config = load(args.config)
    channels = build_channels(config)
    names = args.channel or list(channels)
    unknown = [n for n in names if n not in channels]
    if unknown:
        raise ConfigError(
            f"{args.config}: no channel named {', '.join(unknown)} "
            f"(known: {', '.join(channels) or 'none'})"
        )

    async def send_all() -> list[tuple[str, str | None]]:
        async def one(name: str) -> tuple[str, str | None]:
            try:
                await channels[name].send(test_notification(name))
            except DeliveryError as exc:
                return name, str(exc) + (" (permanent)" if exc.permanent else " (transient)")
            return name, None

        return list(await asyncio.gather(*(one(n) for n in names)))

    failures = 0
    for name, error in asyncio.run(send_all()):
        print(f"{name}: {'accepted' if error is None else 'FAILED: ' + error}")
        failures += error is not None
    return 1 if failures else 0


def render_report(config: Config, period: str, fmt: str) -> str:
    """The report over ``period`` (e.g. ``"30d"``) from the store, rendered as ``fmt``."""
    from monitor.config.loader import parse_duration
    from monitor.reports.data import build
    from monitor.reports.render import render

    try:
        span = parse_duration(period)
    except ValueError as exc:
        raise ConfigError(f"--period: {exc}") from None
    store = _open(config)
    try:
        return render(build(config, store, span, datetime.now(UTC)), fmt)
    finally:
        store.close()


def write_report(config: Config, path: Path, period: str = "30d", fmt: str = "html") -> Path:
    """Write the report to ``path`` atomically."""
    text = render_report(config, period, fmt)
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    except OSError as exc:
        raise ConfigError(f"--output: cannot write {path}: {exc.strerror}") from exc
    return path


def report_command(args: argparse.Namespace) -> int:
    config = load(args.config)
    if args.output is not None:
        write_report(config, args.output, args.period, args.format)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(render_report(config, args.period, args.format))
    return 0


def renew_command(args: argparse.Namespace) -> int:
    from monitor.alerts.outbox import Outbox
    from monitor.renewal.deploy import validate_hooks
    from monitor.renewal.runner import FAILED, renew

    config = load(args.config)
    chosen = [
        r for r in config.renewals if not args.endpoint or set(args.endpoint) & set(r.endpoints)
    ]
    if not chosen:
        raise ConfigError(
            f"{args.config}: no [[renewals]] entry"
            + (f" serves {', '.join(args.endpoint)}" if args.endpoint else "")
        )
    for index, renewal in enumerate(config.renewals):
        if renewal in chosen and not args.dry_run:
            validate_hooks(
                config.resolved(renewal).deploy,
                config.renewal_where(index),
            )
    logs.setup(config.daemon.log_format, config.daemon.log_level)
    store = _open(config)

    async def main() -> list[str]:
        outcomes = [
            await renew(config, store, r, force=args.force, dry_run=args.dry_run) for r in chosen
        ]
        await Outbox(store, build_channels(config)).deliver()  # failures and recoveries
        return [f"{o.name}: {o.outcome}: {o.detail}" for o in outcomes]

    try:
        lines = asyncio.run(main())
    finally:
        store.close()
    for line in lines:
        print(line)
    return 2 if any(line.split(": ")[1] in FAILED for line in lines) else 0


DEMO_RENEWAL = """
[[renewals]]
name = "mail2-renewal"
endpoints = ["mail2"]
directory = "{directory}"
ca_file = "{ca_file}"
email = "postmaster@contoso.com"
names = ["mail2.contoso.com"]

[renewals.solver]
type = "http01"
listen = "127.0.0.1:{http_port}"

[renewals.deploy]
dir = "{deploy}"
"""


def demo_renewal(config_path: Path, console: Console) -> None:
    """Renew the demo's expiring certificate against a local pebble (a dry run: issued and
    judged, not deployed), or say how to enable it."""
    from monitor.demo import pebble as demo_pebble
    from monitor.renewal.runner import renew

    if not demo_pebble.installed():
        console.print(
            "ACME renewal: install Debian's pebble (apt-get install pebble) and run "
            "the demo again to see mail2's certificate renewed against a local CA."
        )
        return
    with demo_pebble.Pebble() as ca:
        folder = config_path.parent
        (folder / "pebble-root.pem").write_bytes(ca.root_pem())
        text = config_path.read_text(encoding="utf-8").replace(
            'extra_ca_files = ["demo-root-ca.pem"]',
            'extra_ca_files = ["demo-root-ca.pem", "pebble-root.pem"]',
        )
        text += DEMO_RENEWAL.format(
            directory=ca.directory,
            ca_file=ca.ca_file,
            http_port=ca.http_port,
            deploy=folder / "renewed",
        )
        config_path.write_text(text, encoding="utf-8")
        config = load(config_path)
        store = _open(config)
        try:
            outcome = asyncio.run(renew(config, store, config.renewals[0], dry_run=True))
        finally:
            store.close()
    console.print(
        f"ACME renewal against a local pebble (dry run): {outcome.name}: "
        f"{outcome.outcome}: {clip(outcome.detail, 300)}"
    )


def prune_command(args: argparse.Namespace) -> int:
    from monitor.config.loader import parse_duration
    from monitor.store.retention import prune

    config = load(args.config)
    try:
        span = parse_duration(args.older_than)
    except ValueError as exc:
        raise ConfigError(f"--older-than: {exc}") from None
    store = _open(config)
    try:
        done = prune(store, datetime.now(UTC) - span, dry_run=args.dry_run)
    finally:
        store.close()
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"{verb} {done.observations} observations, {done.findings} findings, "
        f"{done.probe_days} daily probe counters, {done.messages} messages, "
        f"{done.alerts} resolved alerts older than {args.older_than}"
    )
    return 0
