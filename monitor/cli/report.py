"""``relaycert report``: a compliance report from the store, as HTML, CSV or JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from monitor.clock import utcnow
from monitor.errors import ConfigError
from monitor.files import write_atomic

if TYPE_CHECKING:
    from monitor.config.loader import Config

NAME = "report"
HELP = "write a compliance report from the store"
NEEDS_CONFIG = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--period", default="30d", help="how far back (default 30d)")
    parser.add_argument("--format", choices=("html", "csv", "json"), default="html")
    parser.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")


def render_report(config: Config, period: str, fmt: str) -> str:
    """The report over ``period`` (e.g. ``"30d"``) from the store, rendered as ``fmt``."""
    from monitor.config.units import parse_duration
    from monitor.reports.build import build
    from monitor.reports.render import render
    from monitor.store.engine import Store

    try:
        span = parse_duration(period)
    except ValueError as exc:
        raise ConfigError(f"--period: {exc}") from None
    store = Store.open(config.database_url())
    try:
        return render(build(config, store, span, utcnow()), fmt)
    finally:
        store.close()


def write_report(config: Config, path: Path, period: str = "30d", fmt: str = "html") -> Path:
    """Write the report to ``path`` atomically."""
    text = render_report(config, period, fmt)
    try:
        write_atomic(path, text.encode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"--output: cannot write {path}: {exc.strerror}") from exc
    return path


def run(args: argparse.Namespace) -> int:
    from monitor.config.loader import load

    config = load(args.config)
    if args.output is not None:
        write_report(config, args.output, args.period, args.format)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(render_report(config, args.period, args.format))
    return 0
