"""The ``relaycert`` command line: the table of commands and what every command shares (the
program's options, ``--config`` and its default, dispatch, one-line errors).

Exit codes follow the monitoring-plugin convention: 0 ok (or info only), 1 warning, 2 critical,
3 unknown or an error of relaycert itself (bad configuration, unreadable file, store failure),
which is printed as one line, never a traceback.  Each command is a module of its own that
declares its arguments (:mod:`monitor.cli.base` says what it declares); its heavy imports wait
until it runs, so ``relaycert --help`` does not pay for the database or TLS libraries.

A new command is its module and one line in :data:`COMMANDS`; ``make docs`` then writes the
completions, the man page and ``docs/commands.md`` from the parser built here.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, cast

from monitor import __version__, logs
from monitor.cli.base import Command
from monitor.cli.defaults import CONFIG_HELP, default_config
from monitor.cli.exiting import quick_exit, reader_gone, silence_stdout
from monitor.errors import RelaycertError

EXIT_UNKNOWN = 3

# command -> its module (monitor/cli/base.py: NAME, HELP, NEEDS_CONFIG, add_arguments, run), in
# the order ``relaycert --help`` lists them
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
    "observe": "monitor.cli.observe",
    "demo": "monitor.cli.demo",
    "exchange": "monitor.cli.exchange",
    "import": "monitor.cli.tenant_import",
    "init": "monitor.cli.init",
}


def command(name: str) -> Command:
    """The module that carries out the command ``name``."""
    return cast(Command, importlib.import_module(COMMANDS[name]))


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 3 (UNKNOWN), not argparse's 2, which a monitoring system reads as
    CRITICAL."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_UNKNOWN, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The one parser: the program's options, then each command of :data:`COMMANDS` with
    ``--config`` when it needs a configuration, then the arguments it declares."""
    parser = _Parser(
        prog="relaycert",
        description="Certificate compliance monitor for mail servers relaying through "
        "Microsoft 365.",
    )
    parser.add_argument("--version", action="version", version=f"relaycert {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        declared = command(name)
        command_parser = sub.add_parser(name, help=declared.HELP)
        if declared.NEEDS_CONFIG:
            command_parser.add_argument("--config", "-c", type=Path, help=CONFIG_HELP)
        declared.add_arguments(command_parser)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    chosen = command(args.command)
    if chosen.NEEDS_CONFIG and args.config is None:
        args.config = default_config()
    return chosen.run(args)


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
