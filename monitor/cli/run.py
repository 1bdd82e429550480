"""``relaycert run``: the daemon, or one cycle of it (``--once``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from monitor import logs

if TYPE_CHECKING:
    from monitor.config.loader import Config
    from monitor.store.engine import Store

NAME = "run"
HELP = "run the monitoring daemon (scheduled probes, alerts)"
NEEDS_CONFIG = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--once", action="store_true", help="one cycle: probe every endpoint, deliver alerts, exit"
    )


def run_once(path: Path, config: Config) -> None:
    """One daemon cycle (what ``run --once`` and the demo do)."""
    from monitor import aio
    from monitor.store.engine import Store

    logs.setup(config.daemon.log_format, config.daemon.log_level)
    store = Store.open(config.database_url())
    try:
        aio.run(_once(path, store, config))
    finally:
        store.close()


async def _once(path: Path, store: Store, config: Config) -> None:
    from monitor.service.daemon import Daemon

    await Daemon(path, store, config).run_once()


async def _serve(path: Path, store: Store, config: Config) -> None:
    from monitor.service.daemon import Daemon

    await Daemon(path, store, config).serve()


def run(args: argparse.Namespace) -> int:
    from monitor import aio
    from monitor.config.loader import load
    from monitor.store.engine import Store

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
