"""``relaycert notify-test``: send a test message through each channel (or the named ones)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from monitor.clock import utcnow
from monitor.errors import ConfigError, DeliveryError

if TYPE_CHECKING:
    from notifications.base import Notification

NAME = "notify-test"
HELP = "send a test message through each channel"
NEEDS_CONFIG = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--channel", action="append", metavar="NAME", help="only this channel (repeatable)"
    )


def test_notification(channel: str) -> Notification:
    import uuid

    from notifications.base import Notification

    return Notification(
        kind="test",
        severity="info",
        rule="relaycert.test",
        title="Test message from relaycert",
        endpoint="test",
        host="relaycert.invalid",
        port=25,
        address="",
        connector=None,
        message=f"If you can read this, the channel '{channel}' works.",
        at=utcnow().isoformat(),
        key=f"relaycert:test:{uuid.uuid4().hex}",
    )


def run(args: argparse.Namespace) -> int:
    import asyncio

    from monitor import aio
    from monitor.alerts.channels import build_channels
    from monitor.config.loader import load

    config = load(args.config)
    channels = build_channels(config)
    names = args.channel or list(channels)
    unknown = [n for n in names if n not in channels]
    if unknown:
        raise ConfigError(
            f"{args.config}: no channel named {', '.join(unknown)} "
            f"(known: {', '.join(channels) or 'none'})"
        )

    async def send_all() -> list[tuple[str, str | None]]:
        async def one(name: str) -> tuple[str, str | None]:
            try:
                await channels[name].send(test_notification(name))
            except DeliveryError as exc:
                return name, str(exc) + (" (permanent)" if exc.permanent else " (transient)")
            return name, None

        return list(await asyncio.gather(*(one(n) for n in names)))

    failures = 0
    for name, error in aio.run(send_all()):
        print(f"{name}: {'accepted' if error is None else 'FAILED: ' + error}")
        failures += error is not None
    return 1 if failures else 0
