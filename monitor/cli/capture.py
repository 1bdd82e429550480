"""``relaycert capture``: the capture listener in the foreground.  Each message that arrives is
judged as the on-prem server's client certificate (what Exchange Online would see when it
relays) and printed; ``--once`` prints the next one and exits with its verdict: a
troubleshooting tool for "send a test mail and see what Exchange Online would see"."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

from monitor import aio, logs
from monitor.cli.output import console, print_table
from monitor.cli.scanjson import record_json
from monitor.config.loader import Config, load
from monitor.errors import ConfigError
from monitor.pipeline.listening import CaptureService
from monitor.pipeline.records import ScanRecord, exit_code
from monitor.pipeline.scan import Scanner
from monitor.store.engine import Store

EXIT_NOTHING = 3


def _show(record: ScanRecord, fmt: str) -> None:
    now = datetime.now(UTC)
    if fmt == "json":
        import json

        sys.stdout.write(json.dumps(record_json(record, now), indent=2) + "\n")
    else:
        print_table([record], now, console())
    sys.stdout.flush()


async def _listen(config: Config, store: Store | None, once: bool, timeout: float, fmt: str) -> int:
    scanner = Scanner(config, store)
    first: asyncio.Future[ScanRecord] = asyncio.get_running_loop().create_future()

    def shown(record: ScanRecord) -> None:
        _show(record, fmt)
        if not first.done():
            first.set_result(record)

    service = CaptureService(lambda: scanner, on_record=shown)
    listener = await service.start()
    print(
        f"relaycert capture: listening on {', '.join(listener.bound())} for mail to "
        f"{', '.join(sorted(listener.settings.domains))}"
        + (" (the next message is judged, then exit)" if once else " (Ctrl-C stops)"),
        file=sys.stderr,
    )
    try:
        if not once:
            await asyncio.Event().wait()
        try:
            record = await asyncio.wait_for(asyncio.shield(first), timeout)
        except TimeoutError:
            print(f"relaycert capture: nothing arrived within {timeout:g}s", file=sys.stderr)
            return EXIT_NOTHING
        return exit_code([record])
    finally:
        await service.close()


def run(args: argparse.Namespace) -> int:
    config = load(args.config)
    if config.capture is None:
        raise ConfigError(
            f"{args.config}: no [capture] section; add one (see docs/outbound.md) to say where "
            "to listen and which probe domains to accept"
        )
    logs.setup(config.daemon.log_format, "warning" if args.once else config.daemon.log_level)
    timeout = args.timeout if args.timeout is not None else config.capture.wait.total_seconds()
    store = None if args.no_store else Store.open(config.database_url())
    try:
        return aio.run(_listen(config, store, args.once, timeout, args.format))
    finally:
        if store is not None:
            store.close()
