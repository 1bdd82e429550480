"""A large one-shot scan judged and stored while its probes run.

With probe workers (``relaycert scan`` over many addresses) the scanning process has little to
do while the workers probe, and once they are done it used to judge, store and encode every
result on one core while the others waited.  Here each endpoint is judged as soon as all its
addresses are back (its addresses see each other's leaves, as in one batch), and whole
endpoints are stored in batches of about :data:`BATCH` records, each batch its own transaction
in the store's thread while the next results are judged.  An interrupted scan keeps the
endpoints already stored; an endpoint is never stored in part.

An endpoint with an outbound check waits for it (its verdict is compared with what the
listener served), as the one-batch path does.  Records come back in the order of the
endpoints, each endpoint's in target order, as :meth:`Scanner.scan` gives them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from checks.base import Baseline
from monitor.config.sections import EndpointConfig
from monitor.pipeline.targets import targets
from monitor.results import ProbeResult, ScanRecord, has_problems

if TYPE_CHECKING:
    from monitor.pipeline.scan import Scanner

BATCH = 1000  # records per store transaction (whole endpoints: a batch may hold a few more)

Progress = Callable[[int, int, int], None]


async def streamed_scan(
    scanner: Scanner,
    endpoints: Sequence[EndpointConfig],
    now: datetime,
    progress: Progress | None = None,
) -> list[ScanRecord]:
    """One scan of ``endpoints`` probed by the scanner's pool: see the module's description.
    ``progress(done, total, with_problems)`` is called as endpoints are judged."""
    config, pool = scanner.config, scanner.pool
    assert pool is not None, "a streamed scan probes in workers (Scanner.streams)"
    lookups = asyncio.ensure_future(scanner.delivery.gather(endpoints))
    found, failed = await targets(config, endpoints)
    client = asyncio.ensure_future(scanner.outbound_checks(endpoints))
    state = _State(scanner, endpoints, now, progress)
    try:
        evidence = await lookups
        evidence.attach(failed)
        for result in failed:
            state.buckets[result.target.endpoint].append((-1, result))
        state.remaining.update(t.endpoint for t in found)
        await state.judge([e.name for e in endpoints if state.complete(e.name)])
        probe = config.probe
        stream = pool.stream(found, probe.concurrency, probe.per_host)
        async with contextlib.aclosing(stream) as chunks:
            async for chunk in chunks:
                done = []
                evidence.attach([result for _, result in chunk])
                for position, result in chunk:
                    if result.chain_der:  # one copy of each distinct chain
                        result.chain_der = scanner.share_chain(result.chain_der)
                    name = result.target.endpoint
                    state.buckets[name].append((position, result))
                    state.remaining[name] -= 1
                    if state.complete(name):
                        done.append(name)
                await state.judge(done)
        for result in await client:
            state.buckets[result.target.endpoint].append((len(found), result))
        await state.judge(list(state.held))
        await state.flush()
    finally:
        lookups.cancel()
        client.cancel()
        await state.settle()
    return [record for e in endpoints for record in state.judged.get(e.name, ())]


class _State:
    """The endpoints of one streamed scan: results waiting, records judged, batches stored."""

    def __init__(
        self,
        scanner: Scanner,
        endpoints: Sequence[EndpointConfig],
        now: datetime,
        progress: Progress | None,
    ) -> None:
        self.scanner, self.now, self.progress = scanner, now, progress
        self.total = len(endpoints)
        self.buckets: dict[str, list[tuple[int, ProbeResult]]] = {e.name: [] for e in endpoints}
        self.remaining: Counter[str] = Counter()
        self.held = {e.name for e in endpoints if e.outbound is not None}
        self.judged: dict[str, list[ScanRecord]] = {}
        self.judging = scanner.judge(now)
        self.baselines: Mapping[tuple[str, str, str], Baseline] | None = None
        self.names = [e.name for e in endpoints]
        self.pending: list[ScanRecord] = []
        self.writing: asyncio.Future[None] | None = None
        self.failed = 0

    def complete(self, name: str) -> bool:
        return self.remaining[name] <= 0 and name not in self.held

    async def judge(self, names: list[str]) -> None:
        """Judge these endpoints (each with all its results), queue them for the store."""
        if not names:
            return
        if self.baselines is None:  # read once, when the store is open
            self.baselines = await self.scanner.baselines(self.names)
        batch: list[ProbeResult] = []
        for name in names:  # one judge_all for them all: an endpoint's results are adjacent
            self.held.discard(name)
            batch.extend(r for _, r in sorted(self.buckets.pop(name), key=lambda p: p[0]))
        await self.scanner.revocations(batch)
        records = self.judging.judge_all(batch, self.baselines)
        for record in records:
            self.judged.setdefault(record.result.target.endpoint, []).append(record)
        self.pending.extend(records)
        if self.scanner.options.on_judged is not None:
            self.scanner.options.on_judged(records)
        if self.progress is not None:
            for name in names:
                # (setdefault: an endpoint may have no record)
                self.failed += has_problems(self.judged.setdefault(name, []))
            self.progress(len(self.judged), self.total, self.failed)
        if len(self.pending) >= BATCH:
            await self.flush(wait=False)

    async def flush(self, wait: bool = True) -> None:
        """Store what is pending after the batch being written (one at a time, in order)."""
        if self.writing is not None and self.writing.done():
            self.writing.result()  # a store error stops the scan here
            self.writing = None
        if self.pending and (self.writing is None or wait):
            batch, self.pending = self.pending, []
            self.writing = asyncio.ensure_future(self._write(self.writing, batch))
        if wait and self.writing is not None:
            await self.writing

    async def _write(self, before: asyncio.Future[None] | None, batch: list[ScanRecord]) -> None:
        if before is not None:
            await before
        await self.scanner.store_records([(batch, self.now)])

    async def settle(self) -> None:
        """On the way out (done, or stopped by an error): no store write left running."""
        if self.writing is not None and not self.writing.done():
            with contextlib.suppress(Exception):
                await self.writing
