"""Probe results the daemon could not store yet.

While the store cannot be written for a reason outside the data (the database down or
restarting past the store's own tries, a full disk), the daemon keeps probing: each batch's
results are kept here, in memory and bounded, and judged and stored, oldest first and each at
its own instant, together with the next batch whose write works.  Beyond :data:`LIMIT` results
the oldest are dropped (and logged): a long outage costs memory up to the limit, then the
oldest measurements, never the daemon.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from monitor.results import ProbeResult

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


def count(jobs: Sequence[tuple[Sequence[ProbeResult], datetime]]) -> int:
    """How many results ``jobs`` hold."""
    return sum(len(results) for results, _ in jobs)
