"""``relaycert accept ENDPOINT``: make each address's current certificate its baseline."""

from __future__ import annotations

import argparse

from checks.base import Direction
from monitor.clock import utcnow
from monitor.config.loader import load
from monitor.errors import ConfigError
from monitor.store.baselines import accept
from monitor.store.engine import Store


def run(args: argparse.Namespace) -> int:
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
