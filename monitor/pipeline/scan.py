"""The one scan: resolve every endpoint (:mod:`.targets`), probe every address, judge, store.

:class:`Scanner` is used by ``relaycert scan``, by the daemon (one endpoint per job) and by
renewal verification (:meth:`Scanner.probe` only).  One scanner holds one semaphore, so
``[probe] concurrency`` bounds the connections in flight across everything it runs, however the
addresses are spread over endpoints.  The clock is read once per scan, so every observation of a
scan is judged at the same instant.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

from checks.base import Baseline, Direction
from monitor.alerts.policy import Tracking
from monitor.config.loader import Config
from monitor.config.sections import EndpointConfig
from monitor.pipeline import outbound
from monitor.pipeline.batching import BatchWriter
from monitor.pipeline.delivery import DeliveryLookups
from monitor.pipeline.judge import Judge, parse_chain
from monitor.pipeline.legacy import legacy_versions
from monitor.pipeline.options import ScanOptions
from monitor.pipeline.revocation import attach, crl_cache
from monitor.pipeline.targets import targets
from monitor.pipeline.unstored import Job, Unstored
from monitor.probe.bounded import HostLimits, probe_bounded
from monitor.probe.trust import trust_anchors
from monitor.results import ProbeResult, ProbeTarget, ScanRecord

if TYPE_CHECKING:  # the database layer is imported when a store is used, not before
    from cryptography import x509
    from sqlmodel import Session

    from monitor.capture.listener import CaptureListener
    from monitor.probe.workers import ProbePool
    from monitor.store.engine import Store


log = logging.getLogger("relaycert.daemon")
CHAIN_CACHE = 4096  # distinct chains remembered for sharing (a fleet serves a few)


class Scanner:
    """Probe, judge and (with a store) store, for one loaded configuration.

    ``store`` may still be opening (a future, in a thread while the probes run: it is used once
    it is).  ``previous`` is the scanner of the configuration this one replaces (a reload): the
    new one takes over its write lock, its unstored results and legacy-TLS memory, and its probe
    permits and per-host limits while those settings are unchanged, so probes still running
    under the old configuration count against the same bounds.
    """

    def __init__(
        self,
        config: Config,
        store: Store | Future[Store] | None = None,
        options: ScanOptions | None = None,
        *,
        previous: Scanner | None = None,
    ) -> None:
        options = options or ScanOptions()
        self.config, self.options = config, options
        self.store: Store | None = None if isinstance(store, Future) else store
        # A store still being opened (in a thread, while the probes run): used once it is.
        self.opening: Future[Store] | None = store if isinstance(store, Future) else None
        self.anchors = options.anchors or trust_anchors(
            config.resolved(config.trust), config.source
        )
        self.tracking = options.tracking or Tracking(auto_accept=config.daemon.auto_accept_renewals)
        probe, old = config.probe, previous
        same = old is not None and old.config.probe.concurrency == probe.concurrency
        self.semaphore: asyncio.Semaphore = (
            old.semaphore if old and same else asyncio.Semaphore(probe.concurrency)
        )
        # Like an MTA's destination concurrency: at most [probe] per_host connections to one
        # address, so relaycert's own parallelism cannot trip a server's connection limit.
        same_hosts = old is not None and old.config.probe.per_host == probe.per_host
        self.hosts: HostLimits = old.hosts if old and same_hosts else HostLimits(probe.per_host)
        # (address, port, mode) -> (when checked, legacy TLS versions accepted).  The daemon
        # checks (its scanner lives long enough to remember); a one-shot scan only when asked.
        self.legacy: dict[tuple[str, int, str], tuple[float, tuple[str, ...]]] = (
            old.legacy if old else {}
        )
        self.endpoints = {e.name: e for e in config.endpoints}
        self._chains: dict[tuple[bytes, ...], tuple[bytes, ...]] = {}
        # Parsed chains, shared by every Judge of this scanner (see Judge).
        self.parsed: dict[tuple[bytes, ...], tuple[x509.Certificate, ...]] = {}
        # MX routes, MTA-STS policies and TLSA lookups of the delivery direction.
        self.delivery = DeliveryLookups(config, self.anchors)
        # Every leaf's CRL, kept until its nextUpdate and shared by every endpoint.
        self.crls = crl_cache(config, options.clock)
        # One scan's transaction at a time (kept across a reload).
        self.write_lock: asyncio.Lock = old.write_lock if old else asyncio.Lock()
        # The daemon's group commit (None: each call stores its own results at once).
        self.batcher = BatchWriter(self.judge_and_store_many) if options.daemon else None
        # The daemon's results kept while the store cannot take them (they survive a reload).
        self.unstored: Unstored | None = None
        if options.daemon:
            self.unstored = old.unstored if old and old.unstored else Unstored()
        # The capture listener the outbound checks wait at, or why there is none.
        self.capture: CaptureListener | None = options.capture
        self.capture_unavailable = None if options.capture else options.capture_unavailable

    @property
    def check_legacy(self) -> bool:
        return self.options.daemon or self.options.legacy_tls

    @property
    def pool(self) -> ProbePool | None:
        return self.options.pool

    @property
    def streams(self) -> bool:
        """Whether a scan is judged and stored while it runs (:mod:`.streamed`): with probe
        workers, unless legacy handshakes follow the probes."""
        return self.pool is not None and not self.check_legacy

    async def ready_store(self) -> Store | None:
        """The store, waiting for it if it is still being opened."""
        if self.opening is not None:
            self.store = await asyncio.wrap_future(self.opening)
            self.opening = None
        return self.store

    async def probe(
        self,
        endpoints: Sequence[EndpointConfig],
        on_start: Callable[[ProbeTarget], None] | None = None,
    ) -> list[ProbeResult]:
        """Resolve and probe every address of ``endpoints`` (no judging, no store); what the
        delivery direction is judged by (MX routes, TLSA, MTA-STS) is looked up meanwhile."""
        evidence = asyncio.ensure_future(self.delivery.gather(endpoints))
        try:
            results = await self._probe(endpoints, on_start)
        except BaseException:
            evidence.cancel()
            raise
        (await evidence).attach(results)
        return results

    async def _probe(
        self,
        endpoints: Sequence[EndpointConfig],
        on_start: Callable[[ProbeTarget], None] | None = None,
    ) -> list[ProbeResult]:
        found, failed = await targets(self.config, endpoints)
        if self.pool is not None:  # forked for a large scan (monitor.probe.workers.wanted)
            probe = self.config.probe
            results = await self.pool.probe(found, probe.concurrency, probe.per_host)
        else:
            clock = self.options.clock
            results = await probe_bounded(found, self.semaphore, on_start, self.hosts, clock)
        for result in results:
            if result.chain_der:
                result.chain_der = self.share_chain(result.chain_der)
        await self._legacy_versions(results)
        return failed + results

    def share_chain(self, der: tuple[bytes, ...]) -> tuple[bytes, ...]:
        """One copy of each distinct chain, however many addresses serve it."""
        if len(self._chains) > CHAIN_CACHE:
            self._chains.clear()
        return self._chains.setdefault(der, der)

    async def _legacy_versions(self, results: list[ProbeResult]) -> None:
        if self.check_legacy:
            every = self.config.probe.legacy_tls_every
            await legacy_versions(results, self.legacy, every, self.semaphore, self.hosts)

    async def scan(
        self,
        endpoints: Sequence[EndpointConfig],
        now: datetime | None = None,
        on_start: Callable[[ProbeTarget], None] | None = None,
    ) -> list[ScanRecord]:
        """One scan of ``endpoints``; records in the order of ``endpoints``."""
        now = now or self.options.clock()
        if self.streams:
            raise TypeError("a scanner with probe workers scans with pipeline.streamed_scan")
        served, client = await asyncio.gather(
            self.probe(endpoints, on_start), self.outbound_checks(endpoints)
        )
        order = {e.name: i for i, e in enumerate(endpoints)}
        results = sorted(
            served + client,
            key=lambda r: (order[r.target.endpoint], r.target.direction is Direction.TO_EXO),
        )
        return await self.judge_and_store(results, now)

    async def outbound_checks(self, endpoints: Sequence[EndpointConfig]) -> list[ProbeResult]:
        """The outbound checks of ``endpoints`` (those that have one), each not-delivered result
        counting the consecutive misses before it."""
        capture, why, clock = self.capture, self.capture_unavailable, self.options.clock
        client = await outbound.check_all(
            self.config, endpoints, capture, self.semaphore, why, clock
        )
        if client:
            limit = self.config.capture.misses_critical if self.config.capture else 3
            await asyncio.to_thread(outbound.count_misses, await self.ready_store(), client, limit)
        return client

    async def judge_and_store(self, results: list[ProbeResult], now: datetime) -> list[ScanRecord]:
        """Judge ``results`` at ``now`` against their baselines; store them with tracking (in
        the daemon, together with other jobs' results finishing at the same time)."""
        if self.batcher is not None and await self.ready_store() is not None:
            return await self.batcher.submit(results, now)
        return (await self.judge_and_store_many([(results, now)]))[0]

    async def judge_and_store_many(
        self, jobs: Sequence[tuple[Sequence[ProbeResult], datetime]]
    ) -> list[list[ScanRecord]]:
        """Several scans' results, each judged at its own instant: baselines read in one query,
        everything stored in one transaction; the records of each scan, in order.

        In the daemon (``unstored`` set), results the store cannot take for a reason outside
        the data (:attr:`StoreError.unavailable`) are kept and stored first with the next
        write that works (:mod:`.unstored`); the records returned meanwhile are judged
        without baselines."""
        if self.capture is not None:  # a probe that arrived since its check gave up counts
            outbound.settle([r for results, _ in jobs for r in results], self.capture)
        if self.unstored is None:
            return await self._judge_and_store(jobs)

        def unjudged(jobs: Sequence[Job]) -> list[list[ScanRecord]]:
            return [self.judge(now).judge_all(results, {}) for results, now in jobs]

        return await self.unstored.store_with(jobs, self._judge_and_store, unjudged)

    async def revocations(self, results: Sequence[ProbeResult]) -> None:
        """Each result's CRL verdict (``result.revocation``), before it is judged."""
        if self.config.revocation.enabled:
            await attach(self.crls, partial(parse_chain, self.parsed), results)

    async def _judge_and_store(
        self, jobs: Sequence[tuple[Sequence[ProbeResult], datetime]]
    ) -> list[list[ScanRecord]]:
        await self.revocations([r for results, _ in jobs for r in results])
        names = sorted({r.target.endpoint for results, _ in jobs for r in results})
        baselines = await self.baselines(names)
        groups = [self.judge(now).judge_all(results, baselines) for results, now in jobs]
        await self.store_records(list(zip(groups, (now for _, now in jobs), strict=True)))
        return groups

    def judge(self, now: datetime) -> Judge:
        """A judge at ``now`` sharing this scanner's trust anchors, index and parsed chains."""
        return Judge(
            self.config, now, self.anchors, self.endpoints, self.parsed, self.delivery.routes
        )

    async def baselines(self, names: Sequence[str]) -> dict[tuple[str, str, str], Baseline]:
        """The stored baselines of these endpoints (none without a store)."""
        store = await self.ready_store()
        if store is None:
            return {}
        from monitor.store import queries

        return await asyncio.to_thread(queries.baselines, store, names)

    async def store_records(self, groups: Sequence[tuple[Sequence[ScanRecord], datetime]]) -> None:
        """Store judged records in one transaction, each group tracked (baselines, alerts) at
        its own instant; nothing without a store."""
        store = await self.ready_store()
        # What this process could not measure for its own reasons is no evidence about an
        # endpoint (ProbeResult.local): never stored, never alerted on.
        groups = [([r for r in group if not r.result.local], now) for group, now in groups]
        if store is None or not any(records for records, _ in groups):
            return
        from monitor.alerts.tracking import track
        from monitor.store import writes

        tracking = self.tracking
        records = [record for group, _ in groups for record in group]

        def hook(session: Session, ids: dict[str, int]) -> None:
            for group, now in groups:
                if group:
                    track(session, ids, group, tracking, now)

        async with self.write_lock:
            await asyncio.to_thread(writes.record, store, records, hook)
