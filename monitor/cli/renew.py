"""``relaycert renew``: run the configured renewals once (when due, or ``--force``).

Exit code 2 when any renewal failed (its :class:`~monitor.renewal.outcome.Result` says so), 0
otherwise.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from monitor import logs
from monitor.errors import ConfigError

if TYPE_CHECKING:
    from monitor.config.loader import Config
    from monitor.renewal.outcome import Outcome
    from monitor.renewal.settings import RenewalSettings
    from monitor.store.engine import Store

NAME = "renew"
HELP = "renew certificates through ACME when due"
NEEDS_CONFIG = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint",
        action="append",
        metavar="NAME",
        help="only renewals that serve this endpoint (repeatable)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="issue and judge, but deploy nothing and run no hooks",
    )
    parser.add_argument("--force", action="store_true", help="renew even when not due")
    parser.add_argument(
        "--next-key",
        action="store_true",
        help="stage the next private key and print its TLSA records to publish (DANE); the "
        "next renewal orders with it",
    )


def _chosen(config: Config, args: argparse.Namespace) -> list[RenewalSettings]:
    from monitor.renewal.deploy import validate_hooks

    chosen = [
        r for r in config.renewals if not args.endpoint or set(args.endpoint) & set(r.endpoints)
    ]
    if not chosen:
        raise ConfigError(
            f"{args.config}: no [[renewals]] entry"
            + (f" serves {', '.join(args.endpoint)}" if args.endpoint else "")
        )
    for index, renewal in enumerate(config.renewals):
        if renewal in chosen and not args.dry_run:
            validate_hooks(config.resolved(renewal).deploy, config.renewal_where(index))
    return chosen


async def _renew_all(
    config: Config, store: Store, chosen: list[RenewalSettings], args: argparse.Namespace
) -> list[Outcome]:
    from monitor.alerts.channels import build_channels
    from monitor.alerts.outbox import Outbox
    from monitor.pipeline.listening import listening
    from monitor.renewal.runner import renew

    async with listening(config, store) as scanner:  # for outbound re-checks
        outcomes = [
            await renew(config, store, r, force=args.force, dry_run=args.dry_run, scanner=scanner)
            for r in chosen
        ]
    await Outbox(store, build_channels(config)).deliver()  # failures and recoveries
    return outcomes


def _next_key(config: Config, chosen: list[RenewalSettings]) -> int:
    """``--next-key``: stage each renewal's next key and print its TLSA records."""
    from monitor.renewal.context import build
    from monitor.renewal.dane_gate import stage_next_key

    for settings in chosen:
        path, records, made = stage_next_key(build(config, settings))
        print(f"{settings.name}: next key {'made' if made else 'already staged'} at {path}")
        print("  publish beside the current records (DNSSEC-signed), then let renewal run:")
        for record in records:
            print(f"  {record}")
    return 0


def run(args: argparse.Namespace) -> int:
    from monitor import aio
    from monitor.config.loader import load
    from monitor.store.engine import Store

    config = load(args.config)
    chosen = _chosen(config, args)
    if args.next_key:
        return _next_key(config, chosen)
    logs.setup(config.daemon.log_format, config.daemon.log_level)
    store = Store.open(config.database_url())
    try:
        outcomes = aio.run(_renew_all(config, store, chosen, args))
    finally:
        store.close()
    for o in outcomes:
        print(f"{o.name}: {o.outcome.value}: {o.detail}")
    return 2 if any(o.outcome.failed for o in outcomes) else 0
