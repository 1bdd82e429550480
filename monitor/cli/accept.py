"""``relaycert accept ENDPOINT``: make each address's current certificate its baseline."""

from __future__ import annotations

import argparse

from monitor.clock import utcnow
from monitor.errors import ConfigError

NAME = "accept"
HELP = "make an endpoint's current certificate its baseline"
NEEDS_CONFIG = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("endpoint", metavar="ENDPOINT")


def run(args: argparse.Namespace) -> int:
    from checks.base import Direction
    from monitor.config.loader import load
    from monitor.store.baselines import accept
    from monitor.store.engine import Store

    config = load(args.config)
    if config.endpoint(args.endpoint) is None:
        known = ", ".join(e.name for e in config.endpoints)
        raise ConfigError(f"{args.config}: no endpoint named {args.endpoint} (known: {known})")
    store = Store.open(config.database_url())
    try:
        accepted = accept(store, args.endpoint, utcnow())
    finally:
        store.close()
    for address, direction, sha in accepted:
        print(f"accepted {args.endpoint} {address}: {sha} ({Direction(direction).label})")
    return 0
