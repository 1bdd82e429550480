"""``relaycert scan``: probe every endpoint (or the named ones) once, judge, store, print."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from monitor.cli.output import console, print_table, to_json
from monitor.config.loader import Config, load
from monitor.errors import ConfigError
from monitor.pipeline.records import exit_code
from monitor.pipeline.scan import scan
from monitor.store.engine import Store


def scan_and_print(
    config: Config, names: Sequence[str] | None, fmt: str, keep: bool, legacy_tls: bool = False
) -> int:
    unknown = [n for n in names or () if n not in {e.name for e in config.endpoints}]
    if unknown:
        known = ", ".join(e.name for e in config.endpoints)
        raise ConfigError(
            f"{config.source}: no endpoint named {', '.join(unknown)} (known: {known})"
        )
    now = datetime.now(UTC)
    store = Store.open(config.database_url()) if keep else None
    try:
        records = asyncio.run(scan(config, store, names, now, legacy_tls))
    finally:
        if store is not None:
            store.close()
    code = exit_code(records)
    if fmt == "nagios":
        from monitor.cli import nagios

        text, code = nagios.render(records, config, now)
        sys.stdout.write(text)
        return code
    if fmt == "json":
        sys.stdout.write(to_json(records, now, code) + "\n")
    else:
        print_table(records, now, console())
    return code


def run(args: argparse.Namespace) -> int:
    return scan_and_print(
        load(args.config), args.endpoint, args.format, not args.no_store, args.legacy_tls
    )
