"""The daemon's job table: what each kind of job does and how it is scheduled.

- ``endpoint:N``: every endpoint interval, with jitter: scan endpoint N (probe, judge, store)
- ``outbox``: every ``outbox_interval``, and soon after probes: deliver due messages
- ``renewal:N``: every ``check_interval`` (or at the CA's ARI hint): renewal N when due
- ``report``: on ``[reports] schedule`` (cron): write, archive and mail the report

Every job catches :class:`RelaycertError` (the store maps database errors to it) and logs one
line, so one failing job never stops the others.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from checks.base import Direction
from monitor.alerts.outbox import Outbox
from monitor.config.loader import Config
from monitor.config.sections import EndpointConfig
from monitor.errors import RelaycertError, StoreGoneError
from monitor.logs import event
from monitor.renewal.runner import renew
from monitor.reports.archive import publish
from monitor.results import ProbeTarget, ScanRecord
from monitor.service import renewal_schedule
from monitor.service.generation import Generation
from monitor.service.membership import Membership, serves, tolerance
from monitor.store.engine import Store

log = logging.getLogger("relaycert.daemon")


class Jobs:
    """The work of the daemon, and its schedule.  ``gen`` is replaced on reload."""

    def __init__(
        self,
        store: Store,
        gen: Generation,
        outbox: Outbox,
        scheduler: AsyncIOScheduler,
        membership: Membership,
    ) -> None:
        self.store, self.gen, self.outbox, self.scheduler = store, gen, outbox, scheduler
        self.membership = membership
        self.wake_outbox = asyncio.Event()
        self.outbox_lock = asyncio.Lock()
        self.inflight: set[asyncio.Task[object]] = set()
        self.lags: deque[float] = deque(maxlen=100_000)  # seconds between due and probe start
        self._due: dict[str, datetime] = {}
        self.probes = 0
        self.urgent: set[str] = set()  # renewals to run now, past their claim (revocation)
        # Called with an error that must stop the daemon (the store's file is gone).
        self.on_fatal: Callable[[RelaycertError], None] | None = None

    # -- what the jobs do ---------------------------------------------------------------------

    async def check_endpoint(self, name: str) -> list[ScanRecord]:
        """Scan one endpoint (every address), store, track alerts."""
        endpoint = self.gen.scanner.endpoints.get(name)  # indexed: one of thousands
        if endpoint is None:
            return []
        due = self._due.pop(name, None)

        def started(_target: ProbeTarget) -> None:
            nonlocal due
            if due is not None:  # a scheduled run: how late did its first probe start?
                self.lags.append((datetime.now(UTC) - due).total_seconds())
                due = None

        records = await self.gen.scanner.scan([endpoint], on_start=started)
        self.probes += len(records)
        served = [r for r in records if r.result.target.direction is Direction.FROM_EXO]
        if any(f.rule == "cert.revoked" for r in served for f in r.findings):
            renewal_schedule.renew_now(self.scheduler, self.gen.config, self.urgent, name)
        for record in records:
            event(
                log,
                logging.INFO,
                "probe.done",
                endpoint=name,
                address=record.result.target.address,
                status=record.result.status.value,
                findings=len(record.findings),
                worst_rank=max((f.severity.rank for f in record.findings), default=-1),
                ms=record.result.timings.get("total"),
            )
        self.wake_outbox.set()
        return records

    async def deliver(self) -> dict[str, int]:
        return await self.outbox.deliver()

    async def run_once(self) -> None:
        """One cycle: every endpoint of this instance's site once, then the outbox."""
        await asyncio.gather(*(self.check_endpoint(e.name) for e in self.mine(self.gen.config)))
        await self.deliver()

    def mine(self, config: Config) -> list[EndpointConfig]:
        """The endpoints this instance probes: those of its site, and those without one."""
        return [e for e in config.endpoints if serves(self.membership.site, e)]

    async def _claimed(self, key: str, every: timedelta, jitter: timedelta) -> bool:
        """Whether this instance does this run of ``key`` (see :mod:`.membership`)."""
        next_due = datetime.now(UTC) + every - tolerance(every, jitter)
        return await self.membership.claim(key, next_due)

    # -- the jobs -----------------------------------------------------------------------------

    async def _guarded(self, kind: str, work: Coroutine[Any, Any, object], **fields: Any) -> None:
        """Run one job body, tracked for shutdown; its errors become one log line."""
        task = asyncio.current_task()
        if task is not None:
            self.inflight.add(task)
            task.add_done_callback(self.inflight.discard)
        try:
            await work
        except StoreGoneError as exc:
            event(log, logging.CRITICAL, "store.gone", error=str(exc), **fields)
            if self.on_fatal is not None:
                self.on_fatal(exc)
        except RelaycertError as exc:
            event(log, logging.ERROR, f"{kind}.error", error=str(exc), **fields)
        except asyncio.CancelledError:
            # Shutdown abandoned it after the grace period (nothing of it was stored): one log
            # line, not a traceback per job from the scheduler.
            event(log, logging.WARNING, f"{kind}.abandoned", **fields)

    async def endpoint_job(self, name: str) -> None:
        await self._guarded("probe", self._claimed_check(name), endpoint=name)

    async def _claimed_check(self, name: str) -> None:
        config = self.gen.config
        endpoint = self.gen.scanner.endpoints.get(name)
        if endpoint is None:
            return
        interval = config.endpoint_interval(endpoint)
        if await self._claimed(f"endpoint:{name}", interval, config.daemon.jitter_for(interval)):
            await self.check_endpoint(name)
        else:
            self._due.pop(name, None)  # another instance probes it this time

    async def outbox_job(self) -> None:
        if self.outbox_lock.locked():
            return  # a delivery round is running; it picks up whatever is due
        async with self.outbox_lock:
            await self._guarded("outbox", self.deliver())

    async def renewal_job(self, name: str) -> None:
        await self._guarded("renewal", self._renew(name), renewal=name)

    async def _renew(self, name: str) -> None:
        settings = next((r for r in self.gen.config.renewals if r.name == name), None)
        if settings is None:
            return
        every = settings.check_interval
        urgent = name in self.urgent
        self.urgent.discard(name)
        # A revoked certificate's renewal runs on whichever instance saw it; the renewal's own
        # lock (cluster.exclusive) still lets only one of them order.
        if not urgent and not await self._claimed(f"renewal:{name}", every, timedelta(0)):
            return  # another instance checks it this time
        outcome = await renew(self.gen.config, self.store, settings, scanner=self.gen.scanner)
        renewal_schedule.follow_ca(self.scheduler, name, outcome.next_check)
        event(
            log,
            logging.ERROR if outcome.outcome.failed else logging.INFO,
            "renewal." + outcome.outcome.value,
            renewal=name,
            detail=outcome.detail,
            old=outcome.old_sha256,
            new=outcome.new_sha256,
        )
        self.wake_outbox.set()

    async def report_job(self) -> None:
        await self._guarded("report", self._report())

    async def _report(self) -> None:
        gen = self.gen
        job = self.scheduler.get_job("report")
        upcoming = job.next_run_time if job is not None else None
        now = datetime.now(UTC)
        # Due again a minute before the next scheduled time: one instance per scheduled run.
        next_due = upcoming - timedelta(minutes=1) if upcoming else now + timedelta(hours=1)
        if not await self.membership.claim("report", max(next_due, now)):
            return
        paths = await publish(gen.config, self.store, gen.channels, datetime.now(UTC))
        event(log, logging.INFO, "report.written", files=" ".join(str(p) for p in paths))

    # -- the schedule -------------------------------------------------------------------------

    def _replace(self, prefix: str) -> None:
        for job in self.scheduler.get_jobs():
            if job.id.startswith(prefix):
                job.remove()

    def schedule(self, config: Config, first_run_spread: timedelta | None = None) -> None:
        """(Re)create every endpoint, renewal and report job from ``config``."""
        self._schedule_endpoints(config, first_run_spread)
        self._schedule_renewals(config)
        self._schedule_report(config)

    def schedule_outbox(self, config: Config) -> None:
        self._add(self.outbox_job, "outbox", config.daemon.outbox_interval, datetime.now(UTC))

    def _add(
        self,
        func: Callable[..., Coroutine[Any, Any, None]],
        job_id: str,
        every: timedelta,
        first: datetime,
        args: tuple[str, ...] = (),
        jitter: timedelta | None = None,
        misfire: timedelta | None = None,
    ) -> None:
        self.scheduler.add_job(
            func,
            IntervalTrigger(
                seconds=every.total_seconds(),
                jitter=(jitter.total_seconds() or None) if jitter else None,
                start_date=first,
            ),
            args=list(args),
            id=job_id,
            next_run_time=first,
            max_instances=1,
            coalesce=True,
            # APScheduler 3's own default is 1 s; endpoints may start up to an interval late.
            misfire_grace_time=int(misfire.total_seconds()) if misfire else 1,
            replace_existing=True,
        )

    def _schedule_endpoints(self, config: Config, first_run_spread: timedelta | None) -> None:
        self._replace("endpoint:")
        now = datetime.now(UTC)
        mine = self.mine(config)
        # First runs are spread so a (re)start is not a burst: over the jitter, or longer when
        # the fleet is large (about `concurrency` endpoints a second at most), within one
        # interval.  20 000 endpoints at concurrency 64 start over ~5 minutes, not 30 s.
        fleet = timedelta(seconds=len(mine) / config.probe.concurrency)
        for endpoint in mine:
            interval = config.endpoint_interval(endpoint)
            jitter = config.daemon.jitter_for(interval)
            spread = first_run_spread
            if spread is None:
                spread = min(max(jitter, fleet), interval)
            first = now + timedelta(seconds=random.uniform(0, spread.total_seconds()))  # noqa: S311
            self._add(
                self.endpoint_job,
                f"endpoint:{endpoint.name}",
                interval,
                first,
                (endpoint.name,),
                jitter=jitter,
                misfire=interval,
            )

    def _schedule_renewals(self, config: Config) -> None:
        self._replace("renewal:")
        now = datetime.now(UTC)
        for renewal in config.renewals:
            first = now + timedelta(seconds=random.uniform(5, 60))  # noqa: S311
            self._add(
                self.renewal_job,
                f"renewal:{renewal.name}",
                renewal.check_interval,
                first,
                (renewal.name,),
            )

    def _schedule_report(self, config: Config) -> None:
        self._replace("report")
        if config.reports.schedule:
            self.scheduler.add_job(
                self.report_job,
                CronTrigger.from_crontab(config.reports.schedule, timezone=UTC),
                id="report",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=3600,
            )

    def on_submitted(self, ev: JobSubmissionEvent) -> None:
        if ev.job_id.startswith("endpoint:") and ev.scheduled_run_times:
            self._due[ev.job_id.removeprefix("endpoint:")] = min(ev.scheduled_run_times)
