"""Running the capture listener beside a scanner: the outbound checks wait at it, and every
arrival (a message no check waited for: a late probe, a test send, a stray) is judged and kept
through the scanner (:mod:`.arrivals`).

``relaycert run`` keeps one for its whole life (a reload's new scanner is handed the same
listener), ``relaycert scan`` opens one for the scan, ``relaycert capture`` runs one alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import replace

from monitor.capture.listener import CaptureListener
from monitor.capture.options import ListenerSettings
from monitor.capture.waiters import Arrival
from monitor.clock import Clock, utcnow
from monitor.config.loader import Config
from monitor.errors import ConfigError, RelaycertError
from monitor.logs import event
from monitor.pipeline import arrivals
from monitor.pipeline.options import ScanOptions
from monitor.pipeline.scan import Scanner
from monitor.results import ScanRecord
from monitor.store.engine import Store

log = logging.getLogger("relaycert.capture")


class CaptureService:
    """One listener whose arrivals go to ``scanner_of()`` (the current scanner); ``clock``
    dates its certificate when one is generated and every message that arrives."""

    def __init__(
        self,
        scanner_of: Callable[[], Scanner],
        on_record: Callable[[ScanRecord], None] | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.scanner_of, self.on_record, self.clock = scanner_of, on_record, clock
        self.listener: CaptureListener | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, config: Config) -> CaptureListener:
        """Listen as ``config``'s ``[capture]`` says (before any scanner that waits at it is
        made: a scanner gets its listener when it is made)."""
        if config.capture is None:
            raise ConfigError(f"{config.source}: no [capture] section; see docs/outbound.md")
        capture = config.resolved(config.capture)  # its paths, relative to the file's folder
        settings = ListenerSettings.from_section(capture, config.source, self.clock)
        # The on-prem servers' configured addresses may use the reserved connections from the
        # start; the addresses checks submit to and peers that deliver a token are added later.
        known = [a for e in config.endpoints if e.outbound is not None for a in e.addresses or ()]
        listener = CaptureListener(
            settings, on_arrival=self._arrival, known=known, clock=self.clock
        )
        await listener.start()
        self.listener = listener
        return listener

    def _arrival(self, arrival: Arrival) -> None:
        task = asyncio.get_running_loop().create_task(self._judge(arrival))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _judge(self, arrival: Arrival) -> None:
        capture, listener = arrival.capture, self.listener
        if listener is None:
            return
        try:
            record = await arrivals.handle(self.scanner_of(), arrival, listener)
        except RelaycertError as exc:
            event(log, logging.ERROR, "capture.store_failed", peer=capture.peer, error=str(exc))
            return
        event(
            log,
            logging.INFO,
            "capture.judged",
            peer=capture.peer,
            endpoint=record.result.target.endpoint,
            late=bool((record.result.session or {}).get("late")),
            status=record.result.status.value,
            findings=len(record.findings),
        )
        if self.on_record is not None:
            self.on_record(record)

    async def close(self, grace: float = 5.0) -> None:
        if self.listener is not None:
            await self.listener.close()
            self.listener = None
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)


@asynccontextmanager
async def listening(
    config: Config,
    store: Store | Future[Store] | None,
    options: ScanOptions | None = None,
    *,
    required: bool = False,
) -> AsyncIterator[Scanner]:
    """A scanner of ``config`` complete with its capture listener, which is started first and
    runs while the block does, when ``[capture]`` is configured and some endpoint has an
    outbound check (or ``required``).  When the listener cannot start and is not ``required``,
    the scanner is made with the reason, which its outbound checks report instead."""
    options = options or ScanOptions()
    wanted = required or any(e.outbound is not None for e in config.endpoints)
    if config.capture is None or not wanted:
        yield Scanner(config, store, options)
        return
    made: list[Scanner] = []  # arrivals go to the scanner, made once the listener is up
    service = CaptureService(lambda: made[0])
    try:
        listener = await service.start(config)
    except ConfigError as exc:
        if required:
            raise
        why = f"the capture listener could not start: {exc}"
        yield Scanner(config, store, replace(options, capture_unavailable=why))
        return
    made.append(Scanner(config, store, replace(options, capture=listener)))
    try:
        yield made[0]
    finally:
        await service.close()
