"""Group commit for the daemon: the results of endpoint jobs finishing close together are
judged against baselines read in one query and stored in one transaction.

A daemon of 20 000 endpoints on 5-minute schedules finishes ~70 endpoint jobs a second; one
read and one write transaction each (with the alert tracking) is more than SQLite keeps up
with, and the backlog grows without bound (``bench/daemon.py``).  Gathered over
:data:`WINDOW`, a second's jobs cost a few transactions.  A failed write fails every job of its
batch (each logs it; nothing of the batch is stored, as before for one job).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any

from monitor.results import ProbeResult, ScanRecord

WINDOW = 0.2  # seconds to gather jobs' results before writing them together
MAX_BATCH = 1000  # results per transaction at most

Write = Callable[
    [Sequence[tuple[Sequence[ProbeResult], datetime]]],
    Coroutine[Any, Any, list[list[ScanRecord]]],
]


Pending = tuple[Sequence[ProbeResult], datetime, "asyncio.Future[list[ScanRecord]]"]


class BatchWriter:
    """Collects ``(results, now)`` from many callers; ``write`` stores a batch of them."""

    def __init__(self, write: Write, window: float = WINDOW) -> None:
        self.write, self.window = write, window
        self.pending: list[Pending] = []
        self.task: asyncio.Task[None] | None = None

    async def submit(self, results: Sequence[ProbeResult], now: datetime) -> list[ScanRecord]:
        future: asyncio.Future[list[ScanRecord]] = asyncio.get_running_loop().create_future()
        self.pending.append((results, now, future))
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self.pending:
            await asyncio.sleep(self.window)
            batch: list[Pending] = []
            size = 0
            while self.pending and (not batch or size + len(self.pending[0][0]) <= MAX_BATCH):
                item = self.pending.pop(0)
                batch.append(item)
                size += len(item[0])
            try:
                groups = await self.write([(results, now) for results, now, _ in batch])
            except Exception as exc:  # every caller gets the error it would have got alone
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, _, future), records in zip(batch, groups, strict=True):
                if not future.done():
                    future.set_result(records)
