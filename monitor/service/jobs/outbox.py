"""The outbox job, ``outbox``: every ``[daemon] outbox_interval``, and soon after probes or
renewals that enqueued messages, deliver the due messages (:class:`monitor.alerts.outbox.Outbox`)
through the current generation's channels.  One delivery round runs at a time.
"""

from __future__ import annotations

import asyncio

from monitor.alerts.outbox import Outbox
from monitor.config.loader import Config
from monitor.service.generation import Generation
from monitor.service.jobs.context import JobContext
from monitor.service.jobs.table import JobTable

JOB_ID = "outbox"
GATHER = 0.2  # seconds: the messages of probes finishing together go in one round


class OutboxJob:
    def __init__(self, context: JobContext, table: JobTable) -> None:
        self.context, self.table = context, table
        daemon = context.gen.config.daemon
        self.outbox = Outbox(
            context.store,
            context.gen.channels,
            daemon.outbox_lease,
            daemon.retry_base,
            clock=context.clock,
        )
        self.lock = asyncio.Lock()

    def follow(self, gen: Generation) -> None:
        """A reload: deliver through ``gen``'s channels from now on."""
        self.outbox.channels = gen.channels

    async def deliver(self) -> dict[str, int]:
        return await self.outbox.deliver()

    async def job(self) -> None:
        if self.lock.locked():
            return  # a delivery round is running; it picks up whatever is due
        async with self.lock:
            await self.context.guarded("outbox", self.deliver())

    def schedule(self, config: Config) -> None:
        self.table.every(self.job, JOB_ID, config.daemon.outbox_interval, self.table.now())

    async def soon_after_probes(self) -> None:
        """Deliver soon after a probe enqueued messages, not only every outbox_interval."""
        wake = self.context.wake_outbox
        while True:
            await wake.wait()
            await asyncio.sleep(GATHER)
            wake.clear()
            await self.job()
