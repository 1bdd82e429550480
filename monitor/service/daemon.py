"""``relaycert run``: the monitoring service.

An APScheduler (3.x, asyncio) scheduler runs one job per endpoint (its interval, with jitter so a
fleet is not probed in one burst) and one outbox job.  SIGHUP re-reads the configuration (a bad
one is rejected with a log line and the old one keeps running); SIGTERM/SIGINT stop the
scheduler, let in-flight probes finish within ``shutdown_grace`` and cancel the rest.  Each
endpoint's results, baselines, alerts and messages are stored in one transaction, so whatever is
interrupted leaves the store consistent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from checks.base import TrustAnchors
from monitor.alerts.outbox import Outbox
from monitor.alerts.tracking import Tracking, track
from monitor.config.loader import Config, load
from monitor.errors import RelaycertError
from monitor.logs import event
from monitor.pipeline.scan import Judge, baselines_for, targets
from monitor.probe.smtp import probe_many
from monitor.probe.trust import trust_anchors
from monitor.renewal.deploy import validate_hooks
from monitor.renewal.runner import renew
from monitor.reports.archive import publish
from monitor.store.engine import ScanRecord, Store
from notifications.base import Notifier
from notifications.registry import build

log = logging.getLogger("relaycert.daemon")


def build_channels(config: Config) -> dict[str, Notifier]:
    """Every configured channel, its secrets read now (a missing one is a ConfigError)."""
    return {
        c.name: build(config.resolved(c), config.channel_where(i))
        for i, c in enumerate(config.channels)
    }


class Generation:
    """One loaded configuration with everything derived from it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.anchors: TrustAnchors = trust_anchors(config)
        self.channels = build_channels(config)
        self.tracking = Tracking(
            auto_accept=config.daemon.auto_accept_renewals,
            alerts=config.alerts.settings(),
            channels=tuple(config.channels),
            docs_url=config.alerts.docs_url,
        )
        self.semaphore = asyncio.Semaphore(config.probe.concurrency)
        for index, renewal in enumerate(config.renewals):  # hooks are validated at startup
            validate_hooks(
                config.resolved(renewal).deploy,
                config.renewal_where(index),
            )


class Daemon:
    def __init__(self, config_path: Path, store: Store, config: Config) -> None:
        self.path, self.store = config_path, store
        self.gen = Generation(config)
        self.outbox = Outbox(
            store, self.gen.channels, config.daemon.outbox_lease, config.daemon.retry_base
        )
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.stopping = asyncio.Event()
        self.wake_outbox = asyncio.Event()
        self.inflight: set[asyncio.Task[object]] = set()
        self.write_lock = asyncio.Lock()
        self.outbox_lock = asyncio.Lock()
        self.lags: deque[float] = deque(maxlen=100_000)  # seconds between due and probe start
        self._due: dict[str, datetime] = {}
        self.probes = 0

    # -- work ---------------------------------------------------------------------------------

    async def check_endpoint(self, name: str) -> list[ScanRecord]:
        """Probe every address of one endpoint, judge, store, track alerts."""
        gen = self.gen
        endpoint = gen.config.endpoint(name)
        if endpoint is None:
            return []
        now = datetime.now(UTC)
        found, failed = await targets(gen.config, [endpoint])
        async with gen.semaphore:
            due = self._due.pop(name, None)
            if due is not None:  # scheduled run: how late did probing actually start?
                self.lags.append((datetime.now(UTC) - due).total_seconds())
            results = failed + await probe_many(found, len(found) or 1)
        self.probes += len(results)
        baselines = await asyncio.to_thread(baselines_for, self.store, [name])
        judge = Judge(gen.config, now, gen.anchors)
        records = judge.judge_all(results, baselines)
        async with self.write_lock:
            await asyncio.to_thread(
                self.store.record,
                records,
                lambda session, ids: track(session, ids, records, gen.tracking, now),
            )
        for record in records:
            worst = max((f.severity.rank for f in record.findings), default=-1)
            event(
                log,
                logging.INFO,
                "probe.done",
                endpoint=name,
                address=record.result.target.address,
                status=record.result.status.value,
                findings=len(record.findings),
                worst_rank=worst,
                ms=record.result.timings.get("total"),
            )
        self.wake_outbox.set()
        return records

    async def deliver(self) -> dict[str, int]:
        return await self.outbox.deliver()

    async def run_once(self) -> None:
        """One cycle: every endpoint once, then the outbox."""
        await asyncio.gather(*(self.check_endpoint(e.name) for e in self.gen.config.endpoints))
        await self.deliver()

    # -- scheduling ---------------------------------------------------------------------------

    def _track(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.inflight.add(task)
            task.add_done_callback(self.inflight.discard)

    async def _endpoint_job(self, name: str) -> None:
        self._track()
        try:
            await self.check_endpoint(name)
        except RelaycertError as exc:
            event(log, logging.ERROR, "probe.error", endpoint=name, error=str(exc))

    async def _outbox_job(self) -> None:
        if self.outbox_lock.locked():
            return  # a delivery round is running; it picks up whatever is due
        self._track()
        async with self.outbox_lock:
            try:
                await self.deliver()
            except RelaycertError as exc:
                event(log, logging.ERROR, "outbox.error", error=str(exc))

    def schedule(self, config: Config, first_run_spread: timedelta | None = None) -> None:
        """(Re)create every endpoint job from ``config``; keep the outbox job."""
        for job in self.scheduler.get_jobs():
            if job.id.startswith("endpoint:"):
                job.remove()
        now = datetime.now(UTC)
        for endpoint in config.endpoints:
            interval = config.endpoint_interval(endpoint)
            jitter = config.daemon.jitter_for(interval)
            # First runs are spread over the jitter too, so a (re)start is not a burst.
            spread = first_run_spread if first_run_spread is not None else jitter
            first = now + timedelta(seconds=random.uniform(0, spread.total_seconds()))  # noqa: S311
            self.scheduler.add_job(
                self._endpoint_job,
                IntervalTrigger(
                    seconds=interval.total_seconds(),
                    jitter=jitter.total_seconds() or None,
                    start_date=first,
                ),
                args=[endpoint.name],
                id=f"endpoint:{endpoint.name}",
                next_run_time=first,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=int(interval.total_seconds()),
                replace_existing=True,
            )

    async def _renewal_job(self, name: str) -> None:
        self._track()
        settings = next((r for r in self.gen.config.renewals if r.name == name), None)
        if settings is None:
            return
        try:
            outcome = await renew(self.gen.config, self.store, settings)
        except RelaycertError as exc:
            event(log, logging.ERROR, "renewal.error", renewal=name, error=str(exc))
            return
        job = self.scheduler.get_job(f"renewal:{name}")
        if (
            outcome.next_check is not None
            and job is not None
            and job.next_run_time is not None
            and outcome.next_check > job.next_run_time
        ):
            job.modify(next_run_time=outcome.next_check)  # honour the CA's Retry-After (ARI)
        level = logging.INFO if outcome.outcome in ("verified", "skipped") else logging.ERROR
        event(
            log,
            level,
            "renewal." + outcome.outcome,
            renewal=name,
            detail=outcome.detail,
            old=outcome.old_sha256,
            new=outcome.new_sha256,
        )
        self.wake_outbox.set()

    def _schedule_renewals(self, config: Config) -> None:
        for job in self.scheduler.get_jobs():
            if job.id.startswith("renewal:"):
                job.remove()
        now = datetime.now(UTC)
        for renewal in config.renewals:
            first = now + timedelta(seconds=random.uniform(5, 60))  # noqa: S311
            self.scheduler.add_job(
                self._renewal_job,
                IntervalTrigger(seconds=renewal.check_interval.total_seconds(), start_date=first),
                args=[renewal.name],
                id=f"renewal:{renewal.name}",
                next_run_time=first,
                max_instances=1,
                coalesce=True,
                replace_existing=True,
            )

    async def _report_job(self) -> None:
        self._track()
        try:
            paths = await publish(self.gen.config, self.store, self.gen.channels, datetime.now(UTC))
        except RelaycertError as exc:
            event(log, logging.ERROR, "report.error", error=str(exc))
            return
        event(log, logging.INFO, "report.written", files=" ".join(str(p) for p in paths))

    def _schedule_report(self, config: Config) -> None:
        if self.scheduler.get_job("report") is not None:
            self.scheduler.remove_job("report")
        if config.reports.schedule:
            self.scheduler.add_job(
                self._report_job,
                CronTrigger.from_crontab(config.reports.schedule, timezone=UTC),
                id="report",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=3600,
            )

    def _on_submitted(self, ev: JobSubmissionEvent) -> None:
        if ev.job_id.startswith("endpoint:") and ev.scheduled_run_times:
            self._due[ev.job_id.removeprefix("endpoint:")] = min(ev.scheduled_run_times)

    def reload(self) -> None:
        """SIGHUP: load the file again; keep running on the old one when it is bad."""
        try:
            config = load(self.path)
            gen = Generation(config)
        except RelaycertError as exc:
            event(log, logging.ERROR, "config.rejected", file=str(self.path), error=str(exc))
            return
        self.gen = gen
        self.outbox.channels = gen.channels
        self.schedule(config)
        self._schedule_report(config)
        self._schedule_renewals(config)
        event(
            log,
            logging.INFO,
            "config.reloaded",
            file=str(self.path),
            endpoints=len(config.endpoints),
            channels=len(config.channels),
        )

    async def serve(self, first_run_spread: timedelta | None = None) -> None:
        """Run until SIGTERM/SIGINT (or :attr:`stopping` is set)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        config = self.gen.config
        self.scheduler.add_listener(self._on_submitted, EVENT_JOB_SUBMITTED)
        self.schedule(config, first_run_spread)
        self._schedule_report(config)
        self._schedule_renewals(config)
        self.scheduler.add_job(
            self._outbox_job,
            IntervalTrigger(seconds=config.daemon.outbox_interval.total_seconds()),
            id="outbox",
            next_run_time=datetime.now(UTC),
            max_instances=1,
            coalesce=True,
        )
        self.scheduler.start()
        event(
            log,
            logging.INFO,
            "daemon.started",
            file=str(self.path),
            endpoints=len(config.endpoints),
            channels=len(config.channels),
        )
        waker = asyncio.create_task(self._outbox_waker())
        await self.stopping.wait()
        waker.cancel()
        await self.shutdown()

    async def _outbox_waker(self) -> None:
        """Deliver soon after a probe enqueued messages, not only every outbox_interval."""
        while True:
            await self.wake_outbox.wait()
            await asyncio.sleep(0.2)  # gather the messages of probes finishing together
            self.wake_outbox.clear()
            await self._outbox_job()

    async def shutdown(self) -> None:
        self.scheduler.shutdown(wait=False)
        grace = self.gen.config.daemon.shutdown_grace.total_seconds()
        pending = [t for t in self.inflight if not t.done()]
        if pending:
            event(log, logging.INFO, "daemon.stopping", inflight=len(pending), grace_s=grace)
            _, late = await asyncio.wait(pending, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        event(log, logging.INFO, "daemon.stopped")
