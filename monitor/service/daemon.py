"""``relaycert run``: the monitoring service's lifecycle.

An APScheduler (3.x, asyncio) scheduler runs the job table of :mod:`monitor.service.jobs`.
SIGHUP re-reads the configuration into a new generation and swaps it in whole (a bad one is
rejected with a log line and the old one keeps running); SIGTERM/SIGINT stop the scheduler,
let in-flight jobs finish within ``shutdown_grace`` and cancel the rest.  Each endpoint's
results, baselines, alerts and messages are stored in one transaction, so whatever is
interrupted leaves the store consistent.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from monitor import logs
from monitor.clock import Clock, utcnow
from monitor.config.common import listen_address
from monitor.config.loader import Config, load
from monitor.errors import RelaycertError
from monitor.logs import event
from monitor.pipeline.listening import CaptureService
from monitor.service import sdnotify
from monitor.service.generation import Generation
from monitor.service.jobs import Jobs
from monitor.service.membership import Membership
from monitor.store import cluster
from monitor.store.engine import Store

if TYPE_CHECKING:
    from monitor.service.listener import MetricsServer

log = logging.getLogger("relaycert.daemon")


class Daemon:
    def __init__(
        self, config_path: Path, store: Store, config: Config, clock: Clock = utcnow
    ) -> None:
        self.path, self.store = config_path, store
        self.clock = clock
        self.membership = Membership(store, config, clock)
        self.jobs = Jobs(store, Generation(config, store, clock=clock), self.membership, clock)
        self.scheduler = self.jobs.table.scheduler
        self.stopping = asyncio.Event()
        # The capture listener lives as long as the daemon; arrivals go to the scanner
        # of the current generation.
        self.capture = CaptureService(lambda: self.gen.scanner, clock=clock)
        self.failure: RelaycertError | None = None
        self.jobs.on_fatal = self._fatal
        self.metrics: MetricsServer | None = None  # aiohttp is imported only to start it
        self.tenant_check = 30.0  # seconds between looks at the Exchange exports

    def _fatal(self, exc: RelaycertError) -> None:
        """Stop: carrying on would lose what is written (see :class:`StoreGoneError`)."""
        if self.failure is None:
            self.failure = exc
        self.stopping.set()

    @property
    def gen(self) -> Generation:
        return self.jobs.gen

    @property
    def probes(self) -> int:
        return self.jobs.endpoints.probes

    @property
    def lags(self) -> list[float]:
        return list(self.jobs.endpoints.lags)

    async def run_once(self) -> None:
        """One cycle: every endpoint once, then the outbox."""
        await self.start_capture()
        try:
            await self.jobs.run_once()
        finally:
            await self.capture.close()

    async def start_metrics(self) -> None:
        """``[daemon] metrics_listen``: serve /metrics and /healthz."""
        listen = self.gen.config.daemon.metrics_listen
        if listen is None:
            return
        from monitor.service.listener import MetricsServer

        host, port = listen_address(listen)
        lags, table = self.jobs.endpoints.lags, self.jobs.table
        self.metrics = MetricsServer(
            self.store,
            lambda: lags[-1] if lags else None,
            lambda: table.running,
            lambda: self.gen.config,
            self.clock,
            problem=self.jobs.context.problem,
        )
        await self.metrics.start(host, port)

    async def start_capture(self) -> None:
        """Start the capture listener when ``[capture]`` is configured, then swap in the
        generation again with a scanner made with it (a scanner gets everything it runs with
        when it is made; the first one's state is handed on).  A port that cannot be bound is
        a :class:`ConfigError` at start: the outbound checks would all fail."""
        config = self.gen.config
        if config.capture is None:
            return
        listener = await self.capture.start(config)
        self.jobs.swap(Generation(config, self.store, self.gen, listener, self.clock))

    async def deliver(self) -> dict[str, int]:
        return await self.jobs.deliver()

    def reload(self) -> None:
        """SIGHUP: load the file again; keep running on the old one when it is bad.  Otherwise
        the new generation is swapped in whole and every job rescheduled from it."""
        try:
            config = load(self.path)
            gen = Generation(
                config, self.store, self.gen, self.capture.listener, self.jobs.context.clock
            )
        except RelaycertError as exc:
            event(log, logging.ERROR, "config.rejected", file=str(self.path), error=str(exc))
            return
        self.jobs.swap(gen)
        self.jobs.schedule(config)
        # A job that failed under the old configuration may be gone or changed: it is named on
        # /healthz again once it fails three runs in a row under the new one.
        self.jobs.context.failing.clear()
        logs.setup(config.daemon.log_format, config.daemon.log_level)  # a new format applies now
        self.jobs.tenant.check_soon()
        self._announce("config.reloaded", config)

    def _announce(self, name: str, config: Config) -> None:
        endpoints, channels = len(config.endpoints), len(config.channels)
        event(log, logging.INFO, name, file=str(self.path), endpoints=endpoints, channels=channels)

    async def serve(self, first_run_spread: timedelta | None = None) -> None:
        """Run until SIGTERM/SIGINT (or :attr:`stopping` is set).  On SQLite a second daemon
        on the same database is refused (:func:`~monitor.store.cluster.single_daemon`)."""
        with cluster.single_daemon(self.store):
            await self._serve(first_run_spread)

    async def _serve(self, first_run_spread: timedelta | None) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        config, jobs = self.gen.config, self.jobs
        await self.start_capture()
        await self.start_metrics()
        await jobs.tenant.check()
        await self.membership.start()
        beating = asyncio.create_task(
            self.membership.beating(lambda: (self.gen.config, self.gen.tracking))
        )
        jobs.schedule(config, first_run_spread)
        jobs.schedule_outbox(config)
        jobs.table.start()
        self._announce("daemon.started", config)
        tasks = [
            asyncio.create_task(jobs.delivery.soon_after_probes()),
            beating,
            asyncio.create_task(jobs.tenant.watch_files(self.reload, lambda: self.tenant_check)),
            asyncio.create_task(jobs.tenant.refresh_graph()),
        ]
        interval = sdnotify.watchdog_interval()
        if interval:
            tasks.append(asyncio.create_task(sdnotify.keep_alive(interval)))
        sdnotify.notify("READY=1")
        await self.stopping.wait()
        sdnotify.notify("STOPPING=1")
        for task in tasks:
            task.cancel()
        await self.shutdown()
        if self.failure is not None:
            raise self.failure

    async def shutdown(self) -> None:
        self.jobs.table.shutdown()
        grace = self.gen.config.daemon.shutdown_grace.total_seconds()
        pending = [t for t in self.jobs.inflight if not t.done()]
        if pending:
            event(log, logging.INFO, "daemon.stopping", inflight=len(pending), grace_s=grace)
            _, late = await asyncio.wait(pending, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self.capture.close(grace)
        try:
            await self.membership.stop()
        except RelaycertError as exc:
            event(log, logging.ERROR, "instance.stop_error", error=str(exc))
        if self.metrics is not None:
            await self.metrics.close()
        event(log, logging.INFO, "daemon.stopped")
