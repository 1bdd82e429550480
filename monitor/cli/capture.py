"""``relaycert capture``: the capture listener in the foreground.  Each message that arrives is
judged as the on-prem server's client certificate (what Exchange Online would see when it
relays) and printed.

``--once`` is the hand test send: it issues a signed test token, prints the recipient to send
to (``rc-<token>@<probe domain>``), and exits with the verdict of the message that carries it.
A test send is kept as a capture, never as an endpoint's result: only an outbound check's own
probe changes a verdict."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from monitor import logs
from monitor.clock import utcnow
from monitor.errors import ConfigError

if TYPE_CHECKING:
    from monitor.config.loader import Config
    from monitor.config.sections import EndpointConfig
    from monitor.results import ScanRecord
    from monitor.store.engine import Store

NAME = "capture"
HELP = "run the capture listener in the foreground and judge each client certificate"
NEEDS_CONFIG = True

EXIT_NOTHING = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--once",
        action="store_true",
        help="print a test recipient, judge the message sent to it, then exit",
    )
    parser.add_argument(
        "--endpoint",
        metavar="NAME",
        help="judge the test send against this endpoint's connector (default: the only one)",
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help="with --once: wait for this test token (from an earlier --once) instead of a new one",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="with --once: give up after this long (default: [capture] wait)",
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--no-store", action="store_true", help="do not write to the store")


def _show(record: ScanRecord, fmt: str) -> None:
    now = utcnow()
    if fmt == "json":
        import json

        from monitor.cli.scanjson import record_json

        sys.stdout.write(json.dumps(record_json(record, now), indent=2) + "\n")
    else:
        from monitor.cli.output import console, print_table  # rich: only for the table

        print_table([record], now, console())
    sys.stdout.flush()


def _endpoint(config: Config, name: str | None) -> EndpointConfig | None:
    if name is None:
        return None
    for endpoint in config.endpoints:
        if endpoint.name == name:
            return endpoint
    known = ", ".join(e.name for e in config.endpoints) or "none"
    raise ConfigError(f"--endpoint {name}: no such endpoint in {config.source} (known: {known})")


async def _listen(config: Config, store: Store | None, args: argparse.Namespace) -> int:
    import asyncio

    from monitor.capture.dialogue import TOKEN_PREFIX, Capture
    from monitor.capture.tokens import Claim, Kind, Rejected
    from monitor.pipeline import arrivals
    from monitor.pipeline.listening import CaptureService
    from monitor.pipeline.scan import Scanner
    from monitor.results import exit_code

    scanner = Scanner(config, store)
    endpoint = _endpoint(config, args.endpoint)

    def shown(record: ScanRecord) -> None:
        if not args.once or args.format != "json":  # --once --format json prints its own only
            _show(record, args.format)

    service = CaptureService(lambda: scanner, on_record=shown)
    listener = await service.start(config)
    keys = listener.settings.keys
    now = utcnow()
    if args.token:  # the token, or the whole recipient --once printed
        given = args.token.strip().rpartition("@")[0] or args.token.strip()
        claim = keys.verify(given.removeprefix(TOKEN_PREFIX), now)
        if isinstance(claim, Rejected) or claim.kind is not Kind.TEST:
            why = claim.reason if isinstance(claim, Rejected) else "it is not a test token"
            await service.close()
            raise ConfigError(f"--token: {why}; run `relaycert capture --once` for a new one")
        token = claim.token
    else:
        token = keys.issue(Kind.TEST, endpoint.name if endpoint else None, now)
        issued = keys.verify(token, now)
        assert isinstance(issued, Claim)
        claim = issued
    domain = sorted(listener.settings.domains)[0]
    print(
        f"relaycert capture: listening on {', '.join(listener.bound())} for mail to "
        f"{', '.join(sorted(listener.settings.domains))}"
        + (" (Ctrl-C stops)" if not args.once else ""),
        file=sys.stderr,
    )
    print(f"send a test message to {TOKEN_PREFIX}{token}@{domain}", file=sys.stderr, flush=True)
    if not args.once:
        try:
            await asyncio.Event().wait()
        finally:
            await service.close()
    timeout = args.timeout if args.timeout is not None else config.capture.wait.total_seconds()  # type: ignore[union-attr]
    arrival = listener.expect(token)
    try:
        try:
            capture: Capture = await asyncio.wait_for(asyncio.shield(arrival), timeout)
        except TimeoutError:
            print(
                f"relaycert capture: nothing arrived for {TOKEN_PREFIX}{token}@{domain} within "
                f"{timeout:g}s",
                file=sys.stderr,
            )
            return EXIT_NOTHING
        test = arrivals.Attribution(arrivals.TEST, endpoint, "a hand test send")
        record = arrivals.judge_capture(scanner, endpoint, capture)
        await arrivals.save(scanner, record, test, claim, capture.at)
        _show(record, args.format)
        return exit_code([record])
    finally:
        listener.forget(token)
        await service.close()


def run(args: argparse.Namespace) -> int:
    from monitor import aio
    from monitor.config.loader import load
    from monitor.store.engine import Store

    config = load(args.config)
    if config.capture is None:
        raise ConfigError(
            f"{args.config}: no [capture] section; add one (see docs/outbound.md) to say where "
            "to listen and which probe domains to accept"
        )
    logs.setup(config.daemon.log_format, "warning" if args.once else config.daemon.log_level)
    store = None if args.no_store else Store.open(config.database_url())
    try:
        return aio.run(_listen(config, store, args))
    finally:
        if store is not None:
            store.close()
