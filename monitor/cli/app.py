"""The ``relaycert`` command line.

Exit codes follow the monitoring-plugin convention: 0 ok (or info only), 1 warning, 2 critical,
3 unknown or an error of relaycert itself (bad configuration, unreadable file, store failure),
which is printed as one line, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.text import Text

from checks.base import Observation, Policy, ProbeStatus, worst
from checks.registry import evaluate
from monitor import __version__
from monitor.cli.output import print_table, record_json, to_json
from monitor.config.loader import Config, load
from monitor.errors import ConfigError, RelaycertError
from monitor.pipeline.scan import exit_code, scan
from monitor.probe.certfile import read_chain
from monitor.probe.trust import public_anchors, trust_anchors
from monitor.store.engine import ScanRecord, Store

EXIT_UNKNOWN = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relaycert",
        description="Certificate compliance monitor for mail servers relaying through "
        "Microsoft 365.",
    )
    parser.add_argument("--version", action="version", version=f"relaycert {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    scan_p = sub.add_parser("scan", help="probe every endpoint once, judge, store and print")
    scan_p.add_argument("--config", "-c", type=Path, required=True, help="configuration file")
    scan_p.add_argument("--format", choices=("table", "json"), default="table")
    scan_p.add_argument(
        "--endpoint", action="append", metavar="NAME", help="only this endpoint (repeatable)"
    )
    scan_p.add_argument("--no-store", action="store_true", help="do not write to the store")

    inspect_p = sub.add_parser("inspect", help="judge a certificate file (PEM, DER, PKCS#12)")
    inspect_p.add_argument("path", type=Path)
    inspect_p.add_argument("--config", "-c", type=Path, help="take connector and trust from it")
    inspect_p.add_argument("--connector", metavar="NAME", help="connector to judge against")
    inspect_p.add_argument("--host", help="also check that the certificate covers this host")
    inspect_p.add_argument("--format", choices=("table", "json"), default="table")
    secret = inspect_p.add_mutually_exclusive_group()
    secret.add_argument("--password-env", metavar="VAR", help="PKCS#12 password from $VAR")
    secret.add_argument(
        "--password-file", type=Path, metavar="FILE", help="PKCS#12 password from FILE"
    )

    run_p = sub.add_parser("run", help="run the monitoring daemon (scheduled probes, alerts)")
    run_p.add_argument("--config", "-c", type=Path, required=True)
    run_p.add_argument(
        "--once", action="store_true", help="one cycle: probe every endpoint, deliver alerts, exit"
    )

    status_p = sub.add_parser("status", help="every endpoint's last result, from the store")
    status_p.add_argument("--config", "-c", type=Path, required=True)
    status_p.add_argument("--format", choices=("table", "json"), default="table")

    accept_p = sub.add_parser("accept", help="make an endpoint's current certificate its baseline")
    accept_p.add_argument("endpoint", metavar="ENDPOINT")
    accept_p.add_argument("--config", "-c", type=Path, required=True)

    test_p = sub.add_parser("notify-test", help="send a test message through each channel")
    test_p.add_argument("--config", "-c", type=Path, required=True)
    test_p.add_argument(
        "--channel", action="append", metavar="NAME", help="only this channel (repeatable)"
    )

    report_p = sub.add_parser("report", help="write a compliance report from the store")
    report_p.add_argument("--config", "-c", type=Path, required=True)
    report_p.add_argument("--period", default="30d", help="how far back (default 30d)")
    report_p.add_argument("--format", choices=("html", "csv", "json"), default="html")
    report_p.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")

    renew_p = sub.add_parser("renew", help="renew certificates through ACME when due")
    renew_p.add_argument("--config", "-c", type=Path, required=True)
    renew_p.add_argument(
        "--endpoint",
        action="append",
        metavar="NAME",
        help="only renewals that serve this endpoint (repeatable)",
    )
    renew_p.add_argument(
        "--dry-run",
        action="store_true",
        help="issue and judge, but deploy nothing and run no hooks",
    )
    renew_p.add_argument("--force", action="store_true", help="renew even when not due")

    prune_p = sub.add_parser("prune", help="delete history older than a retention period")
    prune_p.add_argument("--config", "-c", type=Path, required=True)
    prune_p.add_argument(
        "--older-than",
        required=True,
        metavar="DURATION",
        help="e.g. 400d; an address's newest observation is always kept",
    )
    prune_p.add_argument("--dry-run", action="store_true", help="count, delete nothing")

    demo_p = sub.add_parser("demo", help="run a scan of a built-in demo fleet on loopback")
    demo_p.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where to write the demo configuration and store (default: a new temporary folder)",
    )
    demo_p.add_argument("--format", choices=("table", "json"), default="table")
    return parser


def _console() -> Console:
    return Console(width=max(100, Console().width), highlight=False)


def _print(records: list[ScanRecord], now: datetime, fmt: str, code: int) -> None:
    if fmt == "json":
        sys.stdout.write(to_json(records, now, code) + "\n")
    else:
        print_table(records, now, _console())


def _scan_command(config: Config, names: Sequence[str] | None, fmt: str, keep: bool) -> int:
    unknown = [n for n in names or () if n not in {e.name for e in config.endpoints}]
    if unknown:
        known = ", ".join(e.name for e in config.endpoints)
        raise ConfigError(
            f"{config.source}: no endpoint named {', '.join(unknown)} (known: {known})"
        )
    now = datetime.now(UTC)
    store = Store.open(config.database_url()) if keep else None
    try:
        records = asyncio.run(scan(config, store, names, now))
    finally:
        if store is not None:
            store.close()
    code = exit_code(records)
    _print(records, now, fmt, code)
    return code


def _password(args: argparse.Namespace) -> bytes | None:
    if args.password_env:
        value = os.environ.get(args.password_env)
        if value is None:
            raise ConfigError(
                f"--password-env: environment variable {args.password_env} is not set"
            )
        return value.encode()
    if args.password_file:
        path: Path = args.password_file
        try:
            return path.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise ConfigError(
                f"--password-file: cannot read {args.password_file}: {exc.strerror}"
            ) from exc
    return None


def _inspect_command(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    chain = read_chain(args.path, _password(args))
    if args.config is not None:
        config = load(args.config)
        connector = None
        if args.connector is not None:
            found = config.connector(args.connector)
            if found is None:
                known = ", ".join(c.name for c in config.connectors) or "none defined"
                raise ConfigError(
                    f"{args.config}: no connector named '{args.connector}' (known: {known})"
                )
            connector = found.to_check()
        elif len(config.connectors) == 1:
            connector = config.connectors[0].to_check()
        policy = Policy(
            now,
            config.tenant.accepted_domains,
            connector,
            config.expiry.to_check(),
            trust_anchors(config),
        )
    elif args.connector is not None:
        raise ConfigError("--connector needs --config, which defines the connectors")
    else:
        policy = Policy(now, trust=public_anchors())
    obs = Observation(ProbeStatus.FILE, chain, host=args.host, port=None)
    findings = evaluate(obs, policy)
    severity = worst(f.severity for f in findings)
    code = severity.exit_code if severity else 0
    from monitor.probe.smtp import ProbeResult, ProbeTarget

    target = ProbeTarget(str(args.path), args.host or "-", 0, "", "file", "", 0)
    record = ScanRecord(
        ProbeResult(target, now, ProbeStatus.FILE),
        chain,
        tuple(findings),
        "file",
        policy.connector.name if policy.connector else None,
    )
    if args.format == "json":
        import json

        sys.stdout.write(json.dumps(record_json(record, now), indent=2) + "\n")
    else:
        print_table([record], now, _console())
    return code


def _demo_command(args: argparse.Namespace) -> int:
    from monitor.cli import commands as service
    from monitor.demo.fleet import running_fleet

    directory = args.dir or Path(tempfile.mkdtemp(prefix="relaycert-demo-"))
    with running_fleet(directory) as config_path:
        config = load(config_path)
        _scan_command(config, None, args.format, keep=True)
        if args.format == "table":
            console = _console()
            console.print(
                "\n[bold]One daemon cycle[/bold] (relaycert run --once): the alerts it "
                "sends, captured in alerts.jsonl instead of e-mail or Teams:\n"
            )
            service.run_once(config_path, config)
            captured = directory / "alerts.jsonl"
            lines = captured.read_text().splitlines() if captured.exists() else []
            for line in lines:
                console.print(Text("  " + json.loads(line)["subject"]))
            console.print(f"\nDemo configuration: {config_path}")
            console.print(f"Store: {config.database_url()}")
            console.print(f"Alerts: {captured} ({len(lines)} messages)")
            console.print("The findings above are illustrations; the demo itself succeeded.")
            service.demo_renewal(config_path, console)
            config = load(config_path)
            report = service.write_report(config, directory / "relaycert-report.html")
            console.print(f"Compliance report (open it in a browser): {report}")
    return 0


def run(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "scan":
        return _scan_command(load(args.config), args.endpoint, args.format, not args.no_store)
    if args.command == "inspect":
        return _inspect_command(args)
    if args.command == "demo":
        return _demo_command(args)
    from monitor.cli import commands as service

    commands = {
        "run": service.run_command,
        "status": service.status_command,
        "report": service.report_command,
        "renew": service.renew_command,
        "prune": service.prune_command,
        "accept": service.accept_command,
        "notify-test": service.notify_test_command,
    }
    return commands[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: one-line errors, exit code 3 for relaycert's own failures."""
    try:
        return run(argv)
    except RelaycertError as exc:
        print(f"relaycert: error: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    except KeyboardInterrupt:
        print("relaycert: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("RELAYCERT_DEBUG"):
            raise
        print(
            f"relaycert: internal error: {type(exc).__name__}: {exc} "
            "(set RELAYCERT_DEBUG=1 for a traceback and please report it)",
            file=sys.stderr,
        )
        return EXIT_UNKNOWN


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
