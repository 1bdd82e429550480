"""The one scan: resolve every endpoint, probe every address, judge, store.

:class:`Scanner` is used by ``relaycert scan``, by the daemon (one endpoint per job) and by
renewal verification (:meth:`Scanner.probe` only).  One scanner holds one semaphore, so
``[probe] concurrency`` bounds the connections in flight across everything it runs, however the
addresses are spread over endpoints.  The clock is read once per scan, so every observation of a
scan is judged at the same instant.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from checks.base import TrustAnchors
from monitor.alerts.tracking import Tracking, track
from monitor.config.loader import Config
from monitor.config.sections import EndpointConfig
from monitor.errors import ProbeError
from monitor.pipeline.judge import Judge
from monitor.pipeline.records import ScanRecord
from monitor.probe.resolve import resolve
from monitor.probe.result import ProbeResult, ProbeTarget
from monitor.probe.smtp import probe_bounded, unresolved
from monitor.probe.trust import trust_anchors
from monitor.store import queries, writes
from monitor.store.engine import Store

if TYPE_CHECKING:
    from sqlmodel import Session


def _target(config: Config, endpoint: EndpointConfig, address: str) -> ProbeTarget:
    return ProbeTarget(
        endpoint=endpoint.name,
        host=endpoint.host,
        port=endpoint.port,
        address=address,
        mode=endpoint.effective_mode,
        ehlo_name=endpoint.ehlo_name or config.probe.ehlo_name,
        timeout=config.endpoint_timeout(endpoint).total_seconds(),
    )


async def targets(
    config: Config, endpoints: Sequence[EndpointConfig]
) -> tuple[list[ProbeTarget], list[ProbeResult]]:
    """The addresses to probe, and a failed result for each endpoint that did not resolve."""

    async def one(endpoint: EndpointConfig) -> list[ProbeTarget] | ProbeResult:
        if endpoint.addresses is not None:
            return [_target(config, endpoint, a) for a in endpoint.addresses]
        timeout = config.endpoint_timeout(endpoint).total_seconds()
        try:
            addresses = await resolve(endpoint.host, endpoint.port, timeout, config.dns.servers())
        except ProbeError as exc:
            return unresolved(_target(config, endpoint, ""), exc.detail)
        return [_target(config, endpoint, a) for a in addresses]

    found: list[ProbeTarget] = []
    failed: list[ProbeResult] = []
    for item in await asyncio.gather(*(one(e) for e in endpoints)):
        if isinstance(item, ProbeResult):
            failed.append(item)
        else:
            found.extend(item)
    return found, failed


class Scanner:
    """Probe, judge and (with a store) store, for one loaded configuration.

    Without ``tracking``, a scan keeps baselines (drift) but does not touch alerts.
    """

    def __init__(
        self,
        config: Config,
        store: Store | None = None,
        *,
        anchors: TrustAnchors | None = None,
        tracking: Tracking | None = None,
        write_lock: asyncio.Lock | None = None,
        semaphore: asyncio.Semaphore | None = None,
    ) -> None:
        self.config, self.store = config, store
        self.anchors = anchors or trust_anchors(config)
        self.tracking = tracking or Tracking(auto_accept=config.daemon.auto_accept_renewals)
        self.semaphore = semaphore or asyncio.Semaphore(config.probe.concurrency)
        self.endpoints = {e.name: e for e in config.endpoints}
        self.write_lock = write_lock or asyncio.Lock()  # one scan's transaction at a time

    async def probe(
        self,
        endpoints: Sequence[EndpointConfig],
        on_start: Callable[[ProbeTarget], None] | None = None,
    ) -> list[ProbeResult]:
        """Resolve and probe every address of ``endpoints`` (no judging, no store)."""
        found, failed = await targets(self.config, endpoints)
        return failed + await probe_bounded(found, self.semaphore, on_start)

    async def scan(
        self,
        endpoints: Sequence[EndpointConfig],
        now: datetime | None = None,
        on_start: Callable[[ProbeTarget], None] | None = None,
    ) -> list[ScanRecord]:
        """One scan of ``endpoints``; records in the order of ``endpoints``."""
        now = now or datetime.now(UTC)
        results = await self.probe(endpoints, on_start)
        order = {e.name: i for i, e in enumerate(endpoints)}
        results.sort(key=lambda r: order[r.target.endpoint])
        store = self.store
        names = [e.name for e in endpoints]
        baselines = await asyncio.to_thread(queries.baselines, store, names) if store else {}
        judge = Judge(self.config, now, self.anchors, self.endpoints)
        records = judge.judge_all(results, baselines)
        if store is not None:
            tracking = self.tracking

            def hook(session: Session, ids: dict[str, int]) -> None:
                track(session, ids, records, tracking, now)

            async with self.write_lock:
                await asyncio.to_thread(writes.record, store, records, hook)
        return records


async def scan(
    config: Config,
    store: Store | None,
    endpoint_names: Sequence[str] | None = None,
    now: datetime | None = None,
) -> list[ScanRecord]:
    """Scan the named endpoints (all when none are named) once."""
    endpoints = [e for e in config.endpoints if not endpoint_names or e.name in endpoint_names]
    return await Scanner(config, store).scan(endpoints, now)
