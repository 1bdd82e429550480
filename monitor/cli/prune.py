"""``relaycert prune``: delete history older than a retention period."""

from __future__ import annotations

import argparse

from monitor.clock import utcnow
from monitor.errors import ConfigError

NAME = "prune"
HELP = "delete history older than a retention period"
NEEDS_CONFIG = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--older-than",
        required=True,
        metavar="DURATION",
        help="e.g. 400d; an address's newest observation is always kept",
    )
    parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")


def run(args: argparse.Namespace) -> int:
    from monitor.config.loader import load
    from monitor.config.units import parse_duration
    from monitor.store.engine import Store
    from monitor.store.retention import prune

    config = load(args.config)
    try:
        span = parse_duration(args.older_than)
    except ValueError as exc:
        raise ConfigError(f"--older-than: {exc}") from None
    store = Store.open(config.database_url())
    try:
        done = prune(store, utcnow() - span, dry_run=args.dry_run)
    finally:
        store.close()
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"{verb} {done.observations} observations, {done.findings} findings, "
        f"{done.probe_days} daily probe counters, {done.messages} messages, "
        f"{done.alerts} resolved alerts, {done.captures} captures, "
        f"{done.instances} instances and {done.claims} claims older than {args.older_than}"
    )
    return 0
