"""Probe results the daemon could not store yet.

While the store cannot be written for a reason outside the data (the database down or
restarting past the store's own tries, a full disk), the daemon keeps probing: each batch's
results are kept here, in memory and bounded, and judged and stored, oldest first and each at
its own instant, together with the next batch whose write works.  Beyond :data:`LIMIT` results
the oldest are dropped (and logged): a long outage costs memory up to the limit, then the
oldest measurements, never the daemon.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from monitor.errors import StoreError
from monitor.logs import event
from monitor.results import ProbeResult, ScanRecord

log = logging.getLogger("relaycert.daemon")

LIMIT = 10_000  # probe results kept at most (a few KB each: their certificate chains)
Job = tuple[Sequence[ProbeResult], datetime]


class Unstored:
    """The kept jobs, oldest first."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self.jobs: list[Job] = []
        self.dropped = 0  # results dropped over the daemon's life

    @property
    def count(self) -> int:
        return sum(len(results) for results, _ in self.jobs)

    def take(self) -> list[Job]:
        """Every kept job (to be stored now); none is kept meanwhile."""
        jobs, self.jobs = self.jobs, []
        return jobs

    def keep(self, jobs: Sequence[Job]) -> int:
        """Keep ``jobs`` after those already kept; returns how many results were dropped."""
        self.jobs.extend(jobs)
        dropped = 0
        count = self.count
        while count > self.limit and self.jobs:
            results, _ = self.jobs.pop(0)
            count -= len(results)
            dropped += len(results)
        self.dropped += dropped
        return dropped

    async def store_with(
        self,
        jobs: Sequence[Job],
        store: Callable[[Sequence[Job]], Awaitable[list[list[ScanRecord]]]],
        unjudged: Callable[[Sequence[Job]], list[list[ScanRecord]]],
    ) -> list[list[ScanRecord]]:
        """Store the kept jobs first, then ``jobs``, with ``store`` (judged against baselines);
        when the store is unavailable keep them all and return ``jobs`` judged without
        baselines (``unjudged``); an error about the data is raised, the kept jobs dropped."""
        held = self.take()
        try:
            groups = await store([*held, *jobs])
        except StoreError as exc:
            if not exc.unavailable:  # about the data: trying it again would fail again
                if held:
                    event(log, logging.ERROR, "store.unstored_dropped", results=count(held))
                raise
            dropped = self.keep([*held, *jobs])
            event(
                log,
                logging.WARNING,
                "store.unstored",
                kept=self.count,
                dropped=dropped or None,
                error=str(exc),
            )
            return unjudged(jobs)
        if held:
            event(log, logging.INFO, "store.unstored_written", results=count(held))
        return groups[len(held) :]


def count(jobs: Sequence[tuple[Sequence[ProbeResult], datetime]]) -> int:
    """How many results ``jobs`` hold."""
    return sum(len(results) for results, _ in jobs)
