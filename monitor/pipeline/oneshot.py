"""``relaycert scan``'s one scan of a configuration: a :class:`~monitor.pipeline.scan.Scanner`
beside the capture listener, with a progress callback, a store still being opened in a thread
while the probes run, and probe worker processes for a large fleet."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import datetime
from typing import TYPE_CHECKING

from monitor.config.loader import Config
from monitor.config.sections import EndpointConfig
from monitor.pipeline.listening import listening
from monitor.pipeline.options import ScanOptions
from monitor.pipeline.streamed import streamed_scan
from monitor.results import ScanRecord, has_problems

if TYPE_CHECKING:
    from monitor.probe.workers import ProbePool
    from monitor.store.engine import Store


async def scan(
    config: Config,
    store: Store | None,
    endpoint_names: Sequence[str] | None = None,
    now: datetime | None = None,
    legacy_tls: bool = False,
    progress: Callable[[int, int, int], None] | None = None,
    opening: Future[Store] | None = None,
    pool: ProbePool | None = None,
    on_judged: Callable[[Sequence[ScanRecord]], None] | None = None,
) -> list[ScanRecord]:
    """Scan the named endpoints (all when none are named) once.  With ``progress``, endpoints
    are scanned (and stored) one by one, concurrently under the same connection bounds, and
    ``progress(done, total, failed)`` is called as each finishes (with workers, one streamed
    scan calls it as endpoints are judged).

    ``opening`` is a store being opened in a thread while the probes run (the database layer
    takes a good part of a second to import); if opening it fails, the scan stops at once with
    that error instead of probing first.  ``pool`` probes in worker processes; its scan tells
    ``on_judged`` each endpoint's records as soon as they are judged."""
    endpoints = [e for e in config.endpoints if not endpoint_names or e.name in endpoint_names]
    options = ScanOptions(legacy_tls=legacy_tls, pool=pool, on_judged=on_judged)
    if opening is None:
        return await _scan(config, store, options, endpoints, now, progress)
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    assert task is not None

    def stop_if_failed(done: Future[Store]) -> None:
        if not done.cancelled() and done.exception() is not None:
            loop.call_soon_threadsafe(task.cancel)

    opening.add_done_callback(stop_if_failed)
    try:
        return await _scan(config, opening, options, endpoints, now, progress)
    except asyncio.CancelledError:
        error = opening.exception() if opening.done() else None
        if error is None:
            raise
        task.uncancel()
        raise error from None


async def _scan(
    config: Config,
    store: Store | Future[Store] | None,
    options: ScanOptions,
    endpoints: list[EndpointConfig],
    now: datetime | None,
    progress: Callable[[int, int, int], None] | None,
) -> list[ScanRecord]:
    async with listening(config, store, options) as scanner:
        if scanner.streams:  # probed in worker processes, judged as endpoints complete
            if progress is not None:
                progress(0, len(endpoints), 0)
            now = now or scanner.options.clock()
            return await streamed_scan(scanner, endpoints, now, progress)
        if progress is None:
            return await scanner.scan(endpoints, now)
        progress(0, len(endpoints), 0)
        done, failed = 0, 0

        async def one(endpoint: EndpointConfig) -> list[ScanRecord]:
            nonlocal done, failed
            records = await scanner.scan([endpoint], now)
            done += 1
            failed += has_problems(records)
            progress(done, len(endpoints), failed)
            return records

        batches = await asyncio.gather(*(one(e) for e in endpoints))
        return [record for batch in batches for record in batch]
