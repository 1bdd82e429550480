"""When the daemon's renewal jobs run besides their ``check_interval``: at once for a revoked
certificate relaycert manages, and at the CA's ARI ``Retry-After``."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor.config.loader import Config
from monitor.logs import event

log = logging.getLogger("relaycert.daemon")
ARI_MIN_POLL = timedelta(minutes=1)  # however short the CA's Retry-After


def renew_now(scheduler: AsyncIOScheduler, config: Config, urgent: set[str], endpoint: str) -> None:
    """A revoked certificate relaycert manages: its renewal runs now, not at its next check (the
    renewal sees cert.revoked and is due at once); ``urgent`` tells the job to skip its claim."""
    now = datetime.now(UTC)
    for renewal in config.renewals:
        job = scheduler.get_job(f"renewal:{renewal.name}")
        if endpoint not in renewal.endpoints or job is None or job.next_run_time is None:
            continue
        if job.next_run_time > now + timedelta(seconds=5):
            urgent.add(renewal.name)  # this run is not the schedule's: no claim
            job.modify(next_run_time=now)
            event(log, logging.WARNING, "renewal.revoked", renewal=renewal.name, endpoint=endpoint)


def follow_ca(scheduler: AsyncIOScheduler, name: str, later: datetime | None) -> None:
    """The CA's Retry-After (ARI): ask again then, earlier or later than check_interval, so a
    window that moves into the past (the CA revoking) is seen at its cadence."""
    job = scheduler.get_job(f"renewal:{name}")
    if later is not None and job is not None and job.next_run_time is not None:
        job.modify(next_run_time=max(later, datetime.now(UTC) + ARI_MIN_POLL))
