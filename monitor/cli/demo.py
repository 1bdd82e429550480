"""``relaycert demo``: the built-in loopback fleet, scanned, one daemon cycle with its alerts,
an ACME renewal against a local pebble (when installed) and a compliance report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from monitor.cli.report import write_report
from monitor.cli.run import run_once
from monitor.cli.scan import scan_and_print

NAME = "demo"
HELP = "run a scan of a built-in demo fleet on loopback"
NEEDS_CONFIG = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where to write the demo configuration and store (default: a new temporary folder)",
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")


def _alert_order(note: dict[str, Any]) -> tuple[int, str, str, str]:
    from checks.base import Severity

    rank = {s.value: s.rank for s in Severity}.get(str(note.get("severity")), 0)
    return (-rank, str(note.get("endpoint")), str(note.get("rule")), str(note.get("kind")))


def run(args: argparse.Namespace) -> int:
    import tempfile

    from rich.text import Text

    from monitor.cli.output import console
    from monitor.config.loader import load
    from monitor.demo.fleet import running_fleet
    from monitor.demo.renewal import demo_renewal

    directory = args.dir or Path(tempfile.mkdtemp(prefix="relaycert-demo-"))
    with running_fleet(directory) as config_path:
        config = load(config_path)
        scan_and_print(config, None, args.format, keep=True)
        if args.format == "table":
            out = console()
            out.print(
                "\n[bold]One daemon cycle[/bold] (relaycert run --once): the alerts it "
                "sends, captured in alerts.jsonl instead of e-mail or Teams:\n"
            )
            run_once(config_path, config)
            captured = directory / "alerts.jsonl"
            lines = captured.read_text().splitlines() if captured.exists() else []
            # Delivered concurrently, so they arrive in any order: shown worst first, by name.
            for note in sorted((json.loads(line) for line in lines), key=_alert_order):
                out.print(Text("  " + note["subject"]), soft_wrap=not out.is_terminal)
            out.print(f"\nDemo configuration: {config_path}")
            out.print(f"Store: {config.database_url()}")
            out.print(f"Alerts: {captured} ({len(lines)} messages)")
            out.print("The findings above are illustrations; the demo itself succeeded.")
            demo_renewal(config_path, out)
            config = load(config_path)
            report = write_report(config, directory / "relaycert-report.html")
            out.print(f"Compliance report (open it in a browser): {report}")
    return 0
