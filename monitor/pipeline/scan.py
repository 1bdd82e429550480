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
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from checks.base import Baseline, Direction, TrustAnchors
from monitor.alerts.policy import Tracking
from monitor.config.loader import Config
from monitor.config.sections import EndpointConfig
from monitor.errors import StoreError
from monitor.logs import event
from monitor.pipeline import outbound
from monitor.pipeline.batching import BatchWriter
from monitor.pipeline.delivery import DeliveryLookups
from monitor.pipeline.judge import Judge
from monitor.pipeline.legacy import legacy_versions
from monitor.pipeline.records import ScanRecord
from monitor.pipeline.revocation import attach, crl_cache
from monitor.pipeline.targets import targets
from monitor.pipeline.unstored import Unstored
from monitor.probe.bounded import HostLimits, probe_bounded
from monitor.probe.result import ProbeResult, ProbeTarget
from monitor.probe.trust import trust_anchors

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
        # Like an MTA's destination concurrency: at most [probe] per_host connections to one
        # address, so relaycert's own parallelism cannot trip a server's connection limit.
        self.hosts = HostLimits(config.probe.per_host)
        # (address, port, mode) -> (when checked, legacy TLS versions accepted).  The daemon
        # checks (its scanner lives long enough to remember); a one-shot scan only when asked.
        self.check_legacy = False
        self.legacy: dict[tuple[str, int, str], tuple[float, tuple[str, ...]]] = {}
        self.endpoints = {e.name: e for e in config.endpoints}
        self._chains: dict[tuple[bytes, ...], tuple[bytes, ...]] = {}
        # Parsed chains, shared by every Judge of this scanner (see Judge).
        self.parsed: dict[tuple[bytes, ...], tuple[x509.Certificate, ...]] = {}
        # MX routes, MTA-STS policies and TLSA lookups of the delivery direction.
        self.delivery = DeliveryLookups(config, self.anchors)
        # Every leaf's CRL, kept until its nextUpdate and shared by every endpoint.
        self.crls = crl_cache(config)
        self.write_lock = write_lock or asyncio.Lock()  # one scan's transaction at a time
        # The capture listener the outbound checks wait at (set by whoever started it), or why
        # there is none; without one, an outbound check reports that instead of a verdict.
        self.capture: CaptureListener | None = None
        self.capture_unavailable: str | None = None
        # The daemon's group commit (None: each call stores its own results at once).
        self.batcher: BatchWriter | None = None
        # The daemon's results kept while the store cannot take them (None: a one-shot scan,
        # whose store errors end it).
        self.unstored: Unstored | None = None
        # A store still being opened (in a thread, while the probes run): used once it is.
        self.opening: Future[Store] | None = None
        # Probe worker processes (``relaycert scan`` over many addresses), or probe here.
        self.pool: ProbePool | None = None
        # Told each endpoint's records as soon as they are judged, in a streamed scan (the CLI
        # encodes its JSON then, while the other probes run).
        self.on_judged: Callable[[Sequence[ScanRecord]], None] | None = None

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
            results = await probe_bounded(found, self.semaphore, on_start, self.hosts)
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
        now = now or datetime.now(UTC)
        if self.streams:
            from monitor.pipeline.streamed import streamed_scan

            return await streamed_scan(self, endpoints, now)
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
        client = await outbound.check_all(
            self.config, endpoints, self.capture, self.semaphore, self.capture_unavailable
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
        held = self.unstored.take()
        try:
            groups = await self._judge_and_store([*held, *jobs])
        except StoreError as exc:
            if not exc.unavailable:  # about the data: trying it again would fail again
                if held:
                    event(log, logging.ERROR, "store.unstored_dropped", results=_count(held))
                raise
            dropped = self.unstored.keep([*held, *jobs])
            event(
                log,
                logging.WARNING,
                "store.unstored",
                kept=self.unstored.count,
                dropped=dropped or None,
                error=str(exc),
            )
            return [self.judge(now).judge_all(results, {}) for results, now in jobs]
        if held:
            event(log, logging.INFO, "store.unstored_written", results=_count(held))
        return groups[len(held) :]

    async def revocations(self, results: Sequence[ProbeResult]) -> None:
        """Each result's CRL verdict (``result.revocation``), before it is judged."""
        if self.config.revocation.enabled:
            await attach(self.crls, self.judge(datetime.now(UTC)).chain, results)

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


def _count(jobs: Sequence[tuple[Sequence[ProbeResult], datetime]]) -> int:
    return sum(len(results) for results, _ in jobs)
