"""The report job, ``report``: on ``[reports] schedule`` (cron, UTC), write, archive and mail the
compliance report (:func:`monitor.reports.archive.publish`), claimed by one instance per
scheduled run.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from monitor.config.loader import Config
from monitor.logs import event
from monitor.reports.archive import publish
from monitor.service.jobs.context import JobContext
from monitor.service.jobs.table import JobTable

log = logging.getLogger("relaycert.daemon")
JOB_ID = "report"
MISFIRE = timedelta(hours=1)  # a report an hour late is still written


class ReportJob:
    def __init__(self, context: JobContext, table: JobTable) -> None:
        self.context, self.table = context, table

    async def job(self) -> None:
        await self.context.guarded("report", self._report())

    async def _report(self) -> None:
        context = self.context
        gen = context.gen
        job = self.table.job(JOB_ID)
        upcoming = job.next_run_time if job is not None else None
        now = self.table.now()
        # Due again a minute before the next scheduled time: one instance per scheduled run.
        next_due = upcoming - timedelta(minutes=1) if upcoming else now + timedelta(hours=1)
        if not await context.membership.claim(JOB_ID, max(next_due, now)):
            return
        paths = await publish(gen.config, context.store, gen.channels, context.clock())
        event(log, logging.INFO, "report.written", files=" ".join(str(p) for p in paths))

    def schedule(self, config: Config) -> None:
        self.table.replace(JOB_ID)
        if config.reports.schedule:
            self.table.cron(self.job, JOB_ID, config.reports.schedule, MISFIRE)
