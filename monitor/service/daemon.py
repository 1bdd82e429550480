"""``relaycert run``: the monitoring service's lifecycle.

An APScheduler (3.x, asyncio) scheduler runs the job table of :mod:`monitor.service.jobs`.
SIGHUP re-reads the configuration (a bad one is rejected with a log line and the old one keeps
running); SIGTERM/SIGINT stop the scheduler, let in-flight jobs finish within
``shutdown_grace`` and cancel the rest.  Each endpoint's results, baselines, alerts and messages
are stored in one transaction, so whatever is interrupted leaves the store consistent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.events import EVENT_JOB_SUBMITTED
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor import logs
from monitor.alerts.outbox import Outbox
from monitor.config.common import listen_address
from monitor.config.loader import Config, load
from monitor.errors import RelaycertError
from monitor.logs import event
from monitor.pipeline.listening import CaptureService
from monitor.service import sdnotify, tenant_watch
from monitor.service.generation import Generation
from monitor.service.jobs import Jobs
from monitor.service.listener import MetricsServer
from monitor.service.membership import Membership
from monitor.store import cluster
from monitor.store.engine import Store

log = logging.getLogger("relaycert.daemon")


class Daemon:
    def __init__(self, config_path: Path, store: Store, config: Config) -> None:
        self.path, self.store = config_path, store
        gen = Generation(config, store)
        outbox = Outbox(store, gen.channels, config.daemon.outbox_lease, config.daemon.retry_base)
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.membership = Membership(store, config)
        self.jobs = Jobs(store, gen, outbox, self.scheduler, self.membership)
        self.stopping = asyncio.Event()
        # The capture listener lives as long as the daemon; arrivals go to the scanner
        # of the current generation.
        self.capture = CaptureService(lambda: self.gen.scanner)
        self.failure: RelaycertError | None = None
        self.jobs.on_fatal = self._fatal
        self.metrics: MetricsServer | None = None
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
        return self.jobs.probes

    @property
    def lags(self) -> list[float]:
        return list(self.jobs.lags)

    async def run_once(self) -> None:
        """One cycle: every endpoint once, then the outbox."""
        await self.start_capture()
        try:
            await self.jobs.run_once()
        finally:
            await self.capture.close()

    async def check_tenant(self) -> None:
        """Tenant drift since the last look (start and every reload); errors are logged."""
        gen = self.gen
        try:
            record = await asyncio.to_thread(
                tenant_watch.check, gen.config, self.store, gen.tracking, datetime.now(UTC)
            )
        except RelaycertError as exc:
            event(log, logging.ERROR, "tenant.error", error=str(exc))
            return
        for finding in record.findings:
            event(log, logging.INFO, "tenant.drift", rule=finding.rule, message=finding.message)
        self.jobs.wake_outbox.set()

    async def start_metrics(self) -> None:
        """``[daemon] metrics_listen``: serve /metrics and /healthz."""
        listen = self.gen.config.daemon.metrics_listen
        if listen is None:
            return
        host, port = listen_address(listen)
        lags = self.jobs.lags
        self.metrics = MetricsServer(
            self.store,
            lambda: lags[-1] if lags else None,
            lambda: self.scheduler.running,
            lambda: self.gen.config,
        )
        await self.metrics.start(host, port)

    async def start_capture(self) -> None:
        """Start the capture listener when ``[capture]`` is configured.  A port that cannot be
        bound is a :class:`ConfigError` at start: the outbound checks would all fail."""
        if self.gen.config.capture is None:
            return
        self.gen.scanner.use_capture(await self.capture.start())

    async def deliver(self) -> dict[str, int]:
        return await self.jobs.deliver()

    def reload(self) -> None:
        """SIGHUP: load the file again; keep running on the old one when it is bad."""
        try:
            config = load(self.path)
            gen = Generation(config, self.store, previous=self.gen)
        except RelaycertError as exc:
            event(log, logging.ERROR, "config.rejected", file=str(self.path), error=str(exc))
            return
        if self.capture.listener is not None:  # [capture] changes take effect on restart
            gen.scanner.use_capture(self.capture.listener)
        self.jobs.gen = gen
        self.membership.site = config.instance.site  # a new site applies to the schedule now
        self.jobs.outbox.channels = gen.channels
        self.jobs.schedule(config)
        logs.setup(config.daemon.log_format, config.daemon.log_level)  # a new format applies now
        task = asyncio.get_running_loop().create_task(self.check_tenant())
        self.jobs.inflight.add(task)
        task.add_done_callback(self.jobs.inflight.discard)
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
        config = self.gen.config
        await self.start_capture()
        await self.start_metrics()
        await self.check_tenant()
        await self.membership.start()
        beating = asyncio.create_task(
            self.membership.beating(lambda: (self.gen.config, self.gen.tracking))
        )
        self.scheduler.add_listener(self.jobs.on_submitted, EVENT_JOB_SUBMITTED)
        self.jobs.schedule(config, first_run_spread)
        self.jobs.schedule_outbox(config)
        self.scheduler.start()
        self._announce("daemon.started", config)
        waker = asyncio.create_task(self._outbox_waker())
        watcher = asyncio.create_task(self._watch_tenant_files())
        graph = asyncio.create_task(self._refresh_graph())
        interval = sdnotify.watchdog_interval()
        pinger = asyncio.create_task(sdnotify.keep_alive(interval)) if interval else None
        sdnotify.notify("READY=1")
        await self.stopping.wait()
        sdnotify.notify("STOPPING=1")
        waker.cancel()
        beating.cancel()
        watcher.cancel()
        graph.cancel()
        if pinger is not None:
            pinger.cancel()
        await self.shutdown()
        if self.failure is not None:
            raise self.failure

    async def _refresh_graph(self) -> None:
        """``[tenant.graph]``: fetch the accepted domains from Microsoft Graph every
        ``refresh``; the file watcher then reloads when they changed."""
        from monitor.config.graph import refresh

        while True:
            config = self.gen.config
            settings = config.tenant.graph
            if settings is None:
                return
            try:
                path = await asyncio.to_thread(
                    refresh, settings, f"{config.source}: tenant.graph", config.source.parent
                )
                event(log, logging.INFO, "tenant.graph_refreshed", file=str(path))
            except RelaycertError as exc:
                event(log, logging.ERROR, "tenant.graph_error", error=str(exc))
            await asyncio.sleep(settings.refresh.total_seconds())

    async def _watch_tenant_files(self) -> None:
        """Reload when a scheduled export of the tenant (connectors, accepted domains) changed."""

        def stamps() -> dict[Path, float]:
            found: dict[Path, float] = {}
            for path in self.gen.config.tenant_files():
                with contextlib.suppress(OSError):
                    found[path] = path.stat().st_mtime
            return found

        known = stamps()
        while True:
            await asyncio.sleep(self.tenant_check)
            now = stamps()
            if now != known:
                event(log, logging.INFO, "tenant.files_changed", files=" ".join(map(str, now)))
                self.reload()
                known = stamps()

    async def _outbox_waker(self) -> None:
        """Deliver soon after a probe enqueued messages, not only every outbox_interval."""
        wake = self.jobs.wake_outbox
        while True:
            await wake.wait()
            await asyncio.sleep(0.2)  # gather the messages of probes finishing together
            wake.clear()
            await self.jobs.outbox_job()

    async def shutdown(self) -> None:
        self.scheduler.shutdown(wait=False)
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
