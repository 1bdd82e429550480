"""The daemon's job table: the APScheduler (3.x, asyncio) scheduler and the shape of its jobs.

Every job is one id (``endpoint:N``, ``renewal:N``, ``outbox``, ``report``), at most one run at
a time, missed runs coalesced into one.  A kind of job (:mod:`monitor.service.jobs`) adds its
jobs here, replaces them all by their id's prefix when it reschedules, and may ask to hear when
one of its runs is submitted (the endpoint jobs measure how late their probes start).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.job import Job
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

JobBody = Callable[..., Coroutine[Any, Any, None]]


class JobTable:
    """The scheduler and its jobs, by id."""

    def __init__(self) -> None:
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        # prefix -> called with (the rest of the id, the earliest scheduled run time)
        self._submitted: dict[str, Callable[[str, datetime], None]] = {}

    def every(
        self,
        func: JobBody,
        job_id: str,
        every: timedelta,
        first: datetime,
        args: tuple[str, ...] = (),
        jitter: timedelta | None = None,
        misfire: timedelta | None = None,
    ) -> None:
        """Run ``func(*args)`` every ``every`` from ``first`` (replacing a job of that id)."""
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

    def cron(self, func: JobBody, job_id: str, crontab: str, misfire: timedelta) -> None:
        """Run ``func()`` on ``crontab`` (UTC)."""
        self.scheduler.add_job(
            func,
            CronTrigger.from_crontab(crontab, timezone=UTC),
            id=job_id,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=int(misfire.total_seconds()),
        )

    def now(self) -> datetime:
        """The scheduler's time: what job times (first runs, next runs, lateness) are in.  It is
        the system clock's, whatever clock the daemon judges and records by."""
        return datetime.now(UTC)

    def replace(self, prefix: str) -> None:
        """Remove every job whose id starts with ``prefix`` (before adding them again)."""
        for job in self.scheduler.get_jobs():
            if job.id.startswith(prefix):
                job.remove()

    def job(self, job_id: str) -> Job | None:
        return self.scheduler.get_job(job_id)

    def on_submitted(self, prefix: str, heard: Callable[[str, datetime], None]) -> None:
        """Call ``heard(rest of the id, earliest scheduled time)`` when a run of a job whose id
        starts with ``prefix`` is submitted."""
        self._submitted[prefix] = heard

    def _heard(self, ev: JobSubmissionEvent) -> None:
        for prefix, heard in self._submitted.items():
            if ev.job_id.startswith(prefix) and ev.scheduled_run_times:
                heard(ev.job_id.removeprefix(prefix), min(ev.scheduled_run_times))

    def start(self) -> None:
        self.scheduler.add_listener(self._heard, EVENT_JOB_SUBMITTED)
        self.scheduler.start()

    @property
    def running(self) -> bool:
        return bool(self.scheduler.running)

    def shutdown(self) -> None:
        self.scheduler.shutdown(wait=False)
