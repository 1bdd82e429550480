"""Deliver the outbox: claim due messages, send them, and mark each sent only after its channel
accepted it.

A message is claimed with a conditional ``UPDATE`` (only if nobody holds a live lease), so two
senders never send the same row; a sender that dies (``kill -9``) leaves a lease that expires and
the message is sent again later: at-least-once on the wire, with a stable idempotency key
(``Notification.key``: Message-ID, ``Idempotency-Key``) so a receiver can drop the rare repeat of
a delivery that was interrupted before it was acknowledged.  At most :data:`PER_CHANNEL` messages of
a channel are in flight at once, which bounds the repeats after a crash (Teams cannot drop
them).  Transient failures are retried with
exponential backoff; permanent ones are marked ``failed`` and shown by ``relaycert status``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from checks.certinfo import clip
from monitor.clock import Clock, utcnow
from monitor.errors import DeliveryError
from monitor.logs import event
from monitor.store import messages
from monitor.store.engine import Store
from notifications.base import Notification, Notifier

MAX_ATTEMPTS = 50
# Messages of one channel in flight at once.  A sender that dies mid-delivery may have posted
# these without recording it, and Teams has no idempotency key: after a crash at most this
# many messages per channel are posted twice.
PER_CHANNEL = 4
log = logging.getLogger("relaycert.outbox")


@dataclass(frozen=True)
class Claimed:
    id: int
    channel: str
    attempts: int
    note: Notification


class Outbox:
    def __init__(
        self,
        store: Store,
        channels: Mapping[str, Notifier],
        lease: timedelta = timedelta(minutes=2),
        retry_base: timedelta = timedelta(seconds=30),
        clock: Clock = utcnow,
    ) -> None:
        self.store, self.channels = store, channels
        self.lease, self.retry_base, self.clock = lease, retry_base, clock
        self.instance = uuid.uuid4().hex[:16]

    def claim(self, limit: int = 100) -> list[Claimed]:
        """Lease up to ``limit`` due messages to this instance, :data:`PER_CHANNEL` per channel."""
        rows = messages.claim(
            self.store, self.instance, self.clock(), self.lease, limit, PER_CHANNEL
        )
        return [Claimed(*row) for row in rows]

    def _finish(self, item: Claimed, error: DeliveryError | None) -> str:
        now = self.clock()
        values: dict[str, object] = {
            "claim_until": None,
            "claimed_by": None,
            "attempts": item.attempts + 1,
        }
        if error is None:
            values |= {"status": "sent", "sent_at": now, "last_error": None}
        elif error.permanent or item.attempts + 1 >= MAX_ATTEMPTS:
            values |= {"status": "failed", "last_error": clip(str(error), 500)}
        else:
            backoff = self.retry_base * (2 ** min(item.attempts, 7))
            delay = max(backoff, timedelta(seconds=error.retry_after or 0))
            values |= {
                "next_attempt_at": now + min(delay, timedelta(hours=1)),
                "last_error": clip(str(error), 500),
            }
        messages.finish(self.store, item.id, self.instance, values)
        return str(values.get("status", "retry"))

    async def _send(self, item: Claimed) -> str:
        channel = self.channels.get(item.channel)
        error: DeliveryError | None = None
        if channel is None:
            error = DeliveryError(
                f"channel '{item.channel}' is no longer configured", permanent=True
            )
        else:
            try:
                await channel.send(item.note)
            except DeliveryError as exc:
                error = exc
            except Exception as exc:
                error = DeliveryError(f"{item.channel}: {type(exc).__name__}: {exc}")
        outcome = await asyncio.to_thread(self._finish, item, error)
        event(
            log,
            logging.WARNING if error else logging.INFO,
            "notification." + outcome,
            channel=item.channel,
            kind=item.note.kind,
            rule=item.note.rule,
            endpoint=item.note.endpoint,
            address=item.note.address,
            attempt=item.attempts + 1,
            error=str(error) if error else None,
        )
        return outcome

    async def deliver(self) -> dict[str, int]:
        """Send everything due now; returns counts per outcome (sent, retry, failed)."""
        counts: dict[str, int] = {}
        while True:
            batch = await asyncio.to_thread(self.claim)
            if not batch:
                return counts
            for outcome in await asyncio.gather(*(self._send(item) for item in batch)):
                counts[outcome] = counts.get(outcome, 0) + 1
