"""The ``relaycert`` command line: one parser and one dispatch table.

Exit codes follow the monitoring-plugin convention: 0 ok (or info only), 1 warning, 2 critical,
3 unknown or an error of relaycert itself (bad configuration, unreadable file, store failure),
which is printed as one line, never a traceback.  Each command lives in its own module, imported
only when it runs, so ``relaycert --help`` does not pay for the database or TLS libraries.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from monitor import __version__, logs
from monitor.cli.defaults import CONFIG_HELP, default_config
from monitor.cli.exiting import quick_exit, reader_gone, silence_stdout
from monitor.errors import RelaycertError

EXIT_UNKNOWN = 3
# Commands whose --config is optional in meaning (inspect works without a configuration).
OPTIONAL_CONFIG = frozenset({"inspect", "demo", "init", "import"})


# command -> the module whose ``run(args) -> int`` carries it out
COMMANDS = {
    "scan": "monitor.cli.scan",
    "inspect": "monitor.cli.inspect",
    "run": "monitor.cli.run",
    "capture": "monitor.cli.capture",
    "status": "monitor.cli.status",
    "accept": "monitor.cli.accept",
    "notify-test": "monitor.cli.notify",
    "report": "monitor.cli.report",
    "renew": "monitor.cli.renew",
    "prune": "monitor.cli.prune",
    "demo": "monitor.cli.demo",
    "init": "monitor.cli.init",
    "import": "monitor.cli.tenant_import",
    "exchange": "monitor.cli.exchange",
}


def _probe_commands(sub: Any) -> None:
    scan_p = sub.add_parser("scan", help="probe every endpoint once, judge, store and print")
    scan_p.add_argument("--config", "-c", type=Path, help=CONFIG_HELP)
    scan_p.add_argument("--format", choices=("table", "json", "nagios"), default="table")
    scan_p.add_argument(
        "--endpoint", action="append", metavar="NAME", help="only this endpoint (repeatable)"
    )
    scan_p.add_argument("--no-store", action="store_true", help="do not write to the store")
    scan_p.add_argument(
        "--problems-only",
        action="store_true",
        help="table: only addresses with a warning or worse (the summary counts all)",
    )
    scan_p.add_argument(
        "--legacy-tls",
        action="store_true",
        help="also check whether each server still accepts TLS 1.0/1.1 (one more handshake "
        "per address; the daemon does it once per [probe] legacy_tls_every)",
    )

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


def _service_commands(sub: Any) -> None:
    run_p = sub.add_parser("run", help="run the monitoring daemon (scheduled probes, alerts)")
    run_p.add_argument("--config", "-c", type=Path, help=CONFIG_HELP)
    run_p.add_argument(
        "--once", action="store_true", help="one cycle: probe every endpoint, deliver alerts, exit"
    )

    capture_p = sub.add_parser(
        "capture",
        help="run the capture listener in the foreground and judge each client certificate",
    )
    capture_p.add_argument("--config", "-c", type=Path, help=CONFIG_HELP)
    capture_p.add_argument(
        "--once",
        action="store_true",
        help="print a test recipient, judge the message sent to it, then exit",
    )
    capture_p.add_argument(
        "--endpoint",
        metavar="NAME",
        help="judge the test send against this endpoint's connector (default: the only one)",
    )
    capture_p.add_argument(
        "--token",
        metavar="TOKEN",
        help="with --once: wait for this test token (from an earlier --once) instead of a new one",
    )
    capture_p.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="with --once: give up after this long (default: [capture] wait)",
    )
    capture_p.add_argument("--format", choices=("table", "json"), default="table")
    capture_p.add_argument("--no-store", action="store_true", help="do not write to the store")

    status_p = sub.add_parser("status", help="every endpoint's last result, from the store")
    status_p.add_argument("--config", "-c", type=Path, help=CONFIG_HELP)
    status_p.add_argument("--format", choices=("table", "json"), default="table")

    accept_p = sub.add_parser("accept", help="make an endpoint's current certificate its baseline")
    accept_p.add_argument("endpoint", metavar="ENDPOINT")
    accept_p.add_argument("--config", "-c", type=Path, help=CONFIG_HELP)

    test_p = sub.add_parser("notify-test", help="send a test message through each channel")
    test_p.add_argument("--config", "-c", type=Path, help=CONFIG_HELP)
    test_p.add_argument(
        "--channel", action="append", metavar="NAME", help="only this channel (repeatable)"
    )


def _store_commands(sub: Any) -> None:
    report_p = sub.add_parser("report", help="write a compliance report from the store")
    report_p.add_argument("--config", "-c", type=Path, help=CONFIG_HELP)
    report_p.add_argument("--period", default="30d", help="how far back (default 30d)")
    report_p.add_argument("--format", choices=("html", "csv", "json"), default="html")
    report_p.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")

    renew_p = sub.add_parser("renew", help="renew certificates through ACME when due")
    renew_p.add_argument("--config", "-c", type=Path, help=CONFIG_HELP)
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
    renew_p.add_argument(
        "--next-key",
        action="store_true",
        help="stage the next private key and print its TLSA records to publish (DANE); the "
        "next renewal orders with it",
    )

    prune_p = sub.add_parser("prune", help="delete history older than a retention period")
    prune_p.add_argument("--config", "-c", type=Path, help=CONFIG_HELP)
    prune_p.add_argument(
        "--older-than",
        required=True,
        metavar="DURATION",
        help="e.g. 400d; an address's newest observation is always kept",
    )
    prune_p.add_argument("--dry-run", action="store_true", help="count, delete nothing")


def _setup_commands(sub: Any) -> None:
    demo_p = sub.add_parser("demo", help="run a scan of a built-in demo fleet on loopback")
    demo_p.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where to write the demo configuration and store (default: a new temporary folder)",
    )
    demo_p.add_argument("--format", choices=("table", "json"), default="table")

    exchange_p = sub.add_parser(
        "exchange", help="check the Exchange Server Send connector's certificate from its exports"
    )
    exchange_p.add_argument("--config", "-c", type=Path, help=CONFIG_HELP)
    exchange_p.add_argument("--format", choices=("text", "json"), default="text")

    import_p = sub.add_parser(
        "import", help="print the TOML that Exchange Online exports (connectors, domains) give"
    )
    import_p.add_argument(
        "--connectors", type=Path, metavar="FILE", help="Get-InboundConnector | ConvertTo-Json"
    )
    import_p.add_argument(
        "--outbound", type=Path, metavar="FILE", help="Get-OutboundConnector | ConvertTo-Json"
    )
    import_p.add_argument(
        "--domains", type=Path, metavar="FILE", help="Get-AcceptedDomain | ConvertTo-Json"
    )

    init_p = sub.add_parser("init", help="write the example configuration to start from")
    init_p.add_argument(
        "--output", "-o", type=Path, default=Path("relaycert.toml"), help="file to write"
    )
    init_p.add_argument(
        "--systemd",
        type=Path,
        metavar="DIR",
        help="also write the systemd units (relaycert.service, its low-port drop-in, the "
        "Postfix reload path and service) into DIR, e.g. /etc/systemd/system",
    )


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 3 (UNKNOWN), not argparse's 2, which a monitoring system reads as
    CRITICAL."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_UNKNOWN, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="relaycert",
        description="Certificate compliance monitor for mail servers relaying through "
        "Microsoft 365.",
    )
    parser.add_argument("--version", action="version", version=f"relaycert {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (_probe_commands, _service_commands, _store_commands, _setup_commands):
        group(sub)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "config", False) is None and args.command not in OPTIONAL_CONFIG:
        args.config = default_config()
    command = importlib.import_module(COMMANDS[args.command])
    code: int = command.run(args)
    return code


def _printable(text: str) -> str:
    """An error message with control characters shown as U+FFFD: configuration keys, file
    names and server replies in it must not drive the terminal."""
    return "".join(ch if ch.isprintable() or ch == "\n" else "\ufffd" for ch in text)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: one-line errors, exit code 3 for relaycert's own failures."""
    logs.setup_command()
    try:
        return run(argv)
    except RelaycertError as exc:
        print(f"relaycert: error: {_printable(str(exc))}", file=sys.stderr)
        return EXIT_UNKNOWN
    except KeyboardInterrupt:
        print("relaycert: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if isinstance(exc, BrokenPipeError) and reader_gone():
            # ``relaycert scan | head``: the reader has what it wanted.
            return silence_stdout()
        if os.environ.get("RELAYCERT_DEBUG"):
            raise
        print(
            f"relaycert: internal error: {type(exc).__name__}: {_printable(str(exc))} "
            "(set RELAYCERT_DEBUG=1 for a traceback and please report it)",
            file=sys.stderr,
        )
        return EXIT_UNKNOWN


def check_main(argv: Sequence[str] | None = None) -> int:
    """``check_relaycert``: the monitoring plugin, options of its own (:mod:`.plugin`)."""
    from monitor.cli import plugin

    try:
        return plugin.main(argv)
    except BrokenPipeError:
        return silence_stdout()


def console_entry() -> NoReturn:
    """The ``relaycert`` command: :func:`main`, then a quick exit."""
    quick_exit(main())


def check_console_entry() -> NoReturn:
    """The ``check_relaycert`` command: :func:`check_main`, then a quick exit."""
    quick_exit(check_main())
