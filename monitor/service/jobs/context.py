"""What every kind of job shares: the generation of the moment (every job reads it when it
runs, so a reload that swaps it in applies to the next run), the store, this instance's claims
(:mod:`monitor.service.membership`), the clock, the outbox's wake-up, and running one job body:
tracked for shutdown, its errors one log line, so one failing job never stops the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from monitor.clock import Clock
from monitor.errors import RelaycertError, StoreGoneError
from monitor.logs import event
from monitor.service.generation import Generation
from monitor.service.membership import Membership, tolerance
from monitor.store.engine import Store

log = logging.getLogger("relaycert.daemon")


class JobContext:
    """The daemon's state every job kind reads; ``gen`` is replaced on reload."""

    def __init__(self, store: Store, gen: Generation, membership: Membership, clock: Clock) -> None:
        self.store, self.gen, self.membership, self.clock = store, gen, membership, clock
        self.wake_outbox = asyncio.Event()  # probes enqueued messages: deliver soon
        self.inflight: set[asyncio.Task[object]] = set()
        # Called with an error that must stop the daemon (the store's file is gone).
        self.on_fatal: Callable[[RelaycertError], None] | None = None

    def track(self, task: asyncio.Task[Any]) -> None:
        """Count ``task`` among the work shutdown waits for (until it is done)."""
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)

    async def guarded(self, kind: str, work: Coroutine[Any, Any, object], **fields: Any) -> None:
        """Run one job body, tracked for shutdown; its errors become one log line."""
        task = asyncio.current_task()
        if task is not None:
            self.track(task)
        try:
            await work
        except StoreGoneError as exc:
            event(log, logging.CRITICAL, "store.gone", error=str(exc), **fields)
            if self.on_fatal is not None:
                self.on_fatal(exc)
        except RelaycertError as exc:
            event(log, logging.ERROR, f"{kind}.error", error=str(exc), **fields)
        except asyncio.CancelledError:
            # Shutdown abandoned it after the grace period (nothing of it was stored): one log
            # line, not a traceback per job from the scheduler.
            event(log, logging.WARNING, f"{kind}.abandoned", **fields)

    async def claimed(self, key: str, every: timedelta, jitter: timedelta) -> bool:
        """Whether this instance does this run of ``key`` (:mod:`monitor.service.membership`)."""
        next_due = self.clock() + every - tolerance(every, jitter)
        return await self.membership.claim(key, next_due)
