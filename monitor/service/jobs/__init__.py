"""The daemon's jobs: one table (:mod:`.table`: the scheduler, jobs by id and prefix, submission
events) and one module per kind of job, each owning how its jobs are scheduled and what a run
does:

- ``endpoint:N`` (:mod:`.endpoints`): every endpoint interval, with jitter: scan endpoint N
- ``outbox`` (:mod:`.outbox`): every ``outbox_interval``, and soon after probes: deliver
- ``renewal:N`` (:mod:`.renewals`): every ``check_interval`` (or at the CA's ARI hint, or at
  once for a revoked certificate): renewal N when due
- ``report`` (:mod:`.report`): on ``[reports] schedule`` (cron): write, archive, mail the report
- the tenant (:mod:`.tenant`): drift at start and on reload, the exports' watch, Graph's refresh

What they share is in :mod:`.context`, the generation of the moment among it.  :class:`Jobs`
puts them together for the daemon; :meth:`Jobs.swap` is a reload's one swap point.

May import: everything below it (the daemon's generation, membership, and every package the
jobs run).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from monitor.alerts.outbox import Outbox
from monitor.clock import Clock, utcnow
from monitor.config.loader import Config
from monitor.config.sections import EndpointConfig
from monitor.errors import RelaycertError
from monitor.results import ScanRecord
from monitor.service.generation import Generation
from monitor.service.jobs.context import JobContext
from monitor.service.jobs.endpoints import EndpointJobs
from monitor.service.jobs.outbox import OutboxJob
from monitor.service.jobs.renewals import RenewalJobs
from monitor.service.jobs.report import ReportJob
from monitor.service.jobs.table import JobTable
from monitor.service.jobs.tenant import TenantJobs
from monitor.service.membership import Membership
from monitor.store.engine import Store

__all__ = ["Jobs"]


class Jobs:
    """The work of the daemon, and its schedule, under one generation at a time."""

    def __init__(
        self, store: Store, gen: Generation, membership: Membership, clock: Clock = utcnow
    ) -> None:
        self.table = JobTable()
        self.context = JobContext(store, gen, membership, clock)
        self.renewals = RenewalJobs(self.context, self.table)
        self.endpoints = EndpointJobs(self.context, self.table, self.renewals.renew_now)
        self.delivery = OutboxJob(self.context, self.table)
        self.report = ReportJob(self.context, self.table)
        self.tenant = TenantJobs(self.context)

    @property
    def gen(self) -> Generation:
        return self.context.gen

    def swap(self, gen: Generation) -> None:
        """A reload's one swap point: every job runs under ``gen`` from its next run on (this
        instance's site and the outbox's channels included); :meth:`schedule` follows."""
        self.context.gen = gen
        self.context.membership.follow(gen.config)
        self.delivery.follow(gen)

    def schedule(self, config: Config, first_run_spread: timedelta | None = None) -> None:
        """(Re)create every endpoint, renewal and report job from ``config``."""
        self.endpoints.schedule(config, first_run_spread)
        self.renewals.schedule(config)
        self.report.schedule(config)

    def schedule_outbox(self, config: Config) -> None:
        self.delivery.schedule(config)

    async def run_once(self) -> None:
        """One cycle: every endpoint of this instance's site once, then the outbox."""
        mine = self.endpoints.mine(self.gen.config)
        await asyncio.gather(*(self.endpoints.check(e.name) for e in mine))
        await self.deliver()

    # -- what the daemon, its tests and its benchmark reach -------------------------------------

    def mine(self, config: Config) -> list[EndpointConfig]:
        return self.endpoints.mine(config)

    async def check_endpoint(self, name: str) -> list[ScanRecord]:
        return await self.endpoints.check(name)

    async def renewal_job(self, name: str) -> None:
        await self.renewals.job(name)

    async def deliver(self) -> dict[str, int]:
        return await self.delivery.deliver()

    @property
    def outbox(self) -> Outbox:
        return self.delivery.outbox

    @property
    def inflight(self) -> set[asyncio.Task[object]]:
        return self.context.inflight

    @property
    def on_fatal(self) -> Callable[[RelaycertError], None] | None:
        return self.context.on_fatal

    @on_fatal.setter
    def on_fatal(self, stop: Callable[[RelaycertError], None] | None) -> None:
        self.context.on_fatal = stop
