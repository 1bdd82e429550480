"""The endpoint jobs, ``endpoint:N``: every endpoint interval, with jitter, scan endpoint N
(probe, judge, store) when this instance claims the run, then wake the outbox.

They also keep the daemon's probe count and the lag of each scheduled run (seconds between the
time it was due and its first probe), and set a revoked certificate's renewal going.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta

from checks.base import Direction
from monitor.config.loader import Config
from monitor.config.sections import EndpointConfig
from monitor.logs import event
from monitor.results import ProbeTarget, ScanRecord
from monitor.service.jobs.context import JobContext
from monitor.service.jobs.table import JobTable
from monitor.service.membership import serves

log = logging.getLogger("relaycert.daemon")
PREFIX = "endpoint:"


class EndpointJobs:
    """One job per endpoint of this instance's site.  ``on_revoked(config, endpoint)``: a
    probe of ``endpoint`` found its served certificate revoked."""

    def __init__(
        self,
        context: JobContext,
        table: JobTable,
        on_revoked: Callable[[Config, str], None],
    ) -> None:
        self.context, self.table, self.on_revoked = context, table, on_revoked
        self.lags: deque[float] = deque(maxlen=100_000)  # seconds between due and probe start
        self._due: dict[str, datetime] = {}
        self.probes = 0
        table.on_submitted(PREFIX, self._submitted)

    def mine(self, config: Config) -> list[EndpointConfig]:
        """The endpoints this instance probes: those of its site, and those without one."""
        return [e for e in config.endpoints if serves(self.context.membership.site, e)]

    # -- a run --------------------------------------------------------------------------------

    async def check(self, name: str) -> list[ScanRecord]:
        """Scan one endpoint (every address), store, track alerts."""
        context = self.context
        endpoint = context.gen.scanner.endpoints.get(name)  # indexed: one of thousands
        if endpoint is None:
            return []
        due = self._due.pop(name, None)

        def started(_target: ProbeTarget) -> None:
            nonlocal due
            if due is not None:  # a scheduled run: how late did its first probe start?
                self.lags.append((self.table.now() - due).total_seconds())
                due = None

        records = await context.gen.scanner.scan([endpoint], context.clock(), on_start=started)
        self.probes += len(records)
        served = [r for r in records if r.result.target.direction is Direction.FROM_EXO]
        if any(f.rule == "cert.revoked" for r in served for f in r.findings):
            self.on_revoked(context.gen.config, name)
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
        context.wake_outbox.set()
        return records

    async def job(self, name: str) -> None:
        await self.context.guarded("probe", self._claimed_check(name), endpoint=name)

    async def _claimed_check(self, name: str) -> None:
        config = self.context.gen.config
        endpoint = self.context.gen.scanner.endpoints.get(name)
        if endpoint is None:
            return
        interval = config.endpoint_interval(endpoint)
        jitter = config.daemon.jitter_for(interval)
        if await self.context.claimed(f"{PREFIX}{name}", interval, jitter):
            await self.check(name)
        else:
            self._due.pop(name, None)  # another instance probes it this time

    def _submitted(self, name: str, due: datetime) -> None:
        self._due[name] = due

    # -- the schedule -------------------------------------------------------------------------

    def schedule(self, config: Config, first_run_spread: timedelta | None) -> None:
        """(Re)create one job per endpoint of :meth:`mine`."""
        self.table.replace(PREFIX)
        now = self.table.now()
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
            self.table.every(
                self.job,
                f"{PREFIX}{endpoint.name}",
                interval,
                first,
                (endpoint.name,),
                jitter=jitter,
                misfire=interval,
            )
