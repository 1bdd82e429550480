"""``relaycert run``: the daemon, or one cycle of it (``--once``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from monitor import aio, logs
from monitor.config.loader import Config, load
from monitor.service.daemon import Daemon
from monitor.store.engine import Store


def run_once(path: Path, config: Config) -> None:
    """One daemon cycle (what ``run --once`` and the demo do)."""
    logs.setup(config.daemon.log_format, config.daemon.log_level)
    store = Store.open(config.database_url())
    try:
        aio.run(_once(path, store, config))
    finally:
        store.close()


async def _once(path: Path, store: Store, config: Config) -> None:
    await Daemon(path, store, config).run_once()


async def _serve(path: Path, store: Store, config: Config) -> None:
    await Daemon(path, store, config).serve()


def run(args: argparse.Namespace) -> int:
    config = load(args.config)
    if args.once:
        run_once(args.config, config)
        return 0
    logs.setup(config.daemon.log_format, config.daemon.log_level)
    store = Store.open(config.database_url())
    try:
        aio.run(_serve(args.config, store, config))
    finally:
        store.close()
    return 0
