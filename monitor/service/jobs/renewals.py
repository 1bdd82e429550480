"""The renewal jobs, ``renewal:N``: every ``check_interval``, renewal N when it is due
(:func:`monitor.renewal.runner.renew`), claimed by one instance per run.  Besides that cadence a
renewal runs at once for a revoked certificate relaycert manages, and at the CA's ARI
``Retry-After``.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta

from monitor.config.loader import Config
from monitor.logs import event
from monitor.renewal.runner import renew
from monitor.service.jobs.context import JobContext
from monitor.service.jobs.table import JobTable

log = logging.getLogger("relaycert.daemon")
PREFIX = "renewal:"
ARI_MIN_POLL = timedelta(minutes=1)  # however short the CA's Retry-After


class RenewalJobs:
    def __init__(self, context: JobContext, table: JobTable) -> None:
        self.context, self.table = context, table
        self.urgent: set[str] = set()  # renewals to run now, past their claim (revocation)

    async def job(self, name: str) -> None:
        await self.context.guarded("renewal", self._renew(name), renewal=name)

    async def _renew(self, name: str) -> None:
        context = self.context
        settings = next((r for r in context.gen.config.renewals if r.name == name), None)
        if settings is None:
            return
        every = settings.check_interval
        urgent = name in self.urgent
        self.urgent.discard(name)
        # A revoked certificate's renewal runs on whichever instance saw it; the renewal's own
        # lock (cluster.exclusive) still lets only one of them order.
        if not urgent and not await context.claimed(f"{PREFIX}{name}", every, timedelta(0)):
            return  # another instance checks it this time
        gen = context.gen
        outcome = await renew(
            gen.config, context.store, settings, now_fn=context.clock, scanner=gen.scanner
        )
        self._follow_ca(name, outcome.next_check)
        event(
            log,
            logging.ERROR if outcome.outcome.failed else logging.INFO,
            "renewal." + outcome.outcome.value,
            renewal=name,
            detail=outcome.detail,
            old=outcome.old_sha256,
            new=outcome.new_sha256,
        )
        context.wake_outbox.set()

    def schedule(self, config: Config) -> None:
        """(Re)create one job per ``[[renewals]]``, the first check 5 to 60 s from now."""
        self.table.replace(PREFIX)
        now = self.table.now()
        for renewal in config.renewals:
            first = now + timedelta(seconds=random.uniform(5, 60))  # noqa: S311
            self.table.every(
                self.job, f"{PREFIX}{renewal.name}", renewal.check_interval, first, (renewal.name,)
            )

    def renew_now(self, config: Config, endpoint: str) -> None:
        """A revoked certificate relaycert manages: its renewal runs now, not at its next check
        (the renewal sees cert.revoked and is due at once), without a claim."""
        now = self.table.now()
        for renewal in config.renewals:
            job = self.table.job(f"{PREFIX}{renewal.name}")
            if endpoint not in renewal.endpoints or job is None or job.next_run_time is None:
                continue
            if job.next_run_time > now + timedelta(seconds=5):
                self.urgent.add(renewal.name)  # this run is not the schedule's: no claim
                job.modify(next_run_time=now)
                event(
                    log, logging.WARNING, "renewal.revoked", renewal=renewal.name, endpoint=endpoint
                )

    def _follow_ca(self, name: str, later: datetime | None) -> None:
        """The CA's Retry-After (ARI): ask again then, earlier or later than check_interval, so a
        window that moves into the past (the CA revoking) is seen at its cadence."""
        job = self.table.job(f"{PREFIX}{name}")
        if later is not None and job is not None and job.next_run_time is not None:
            job.modify(next_run_time=max(later, self.table.now() + ARI_MIN_POLL))
