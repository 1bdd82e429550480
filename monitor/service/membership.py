"""This daemon among several on one PostgreSQL store (docs/architecture.md, "Several
instances").

Every instance schedules every endpoint of its site as if it were alone; before a scheduled
run it *claims* the run in the store (:func:`monitor.store.cluster.claim`), and only the
instance that wins probes.  The claim moves the endpoint's due time on by the interval less a
tolerance (the jitter and a margin), so each endpoint is probed once per interval by one
instance, and when an instance dies the others' own timers pick its endpoints up within one
interval.  Reports and renewal checks are claimed the same way; a renewal also holds an
advisory lock while it runs.  A heartbeat per instance feeds ``relaycert status`` and the
``cluster.site_unwatched`` check.  On SQLite there is one instance (a second is refused) and
nothing is claimed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from checks import cluster as rules
from checks.base import ProbeStatus
from monitor import __version__
from monitor.alerts.policy import Tracking
from monitor.alerts.tracking import track
from monitor.clock import Clock, utcnow
from monitor.config.loader import Config
from monitor.config.sections import EndpointConfig
from monitor.errors import RelaycertError
from monitor.logs import event
from monitor.results import ProbeResult, ProbeTarget, ScanRecord
from monitor.store import cluster, writes
from monitor.store.engine import Store
from monitor.store.models import InstanceRow

log = logging.getLogger("relaycert.daemon")
SITES = "(sites)"  # the pseudo-endpoint the site check's findings are stored under
SITE_RULE_IDS = frozenset(r.id for r in rules.RULES)


def serves(site: str | None, endpoint: EndpointConfig) -> bool:
    """Does an instance of ``site`` probe ``endpoint``?  (No site on the endpoint: any.)"""
    return endpoint.site is None or endpoint.site == site


def tolerance(interval: timedelta, jitter: timedelta) -> timedelta:
    """How much earlier than one interval after a claim the next claim may come: at least the
    jitter (the claimer's own next run may come that much early) and a margin."""
    return jitter + min(interval / 10, timedelta(seconds=30))


class Membership:
    def __init__(self, store: Store, config: Config, clock: Clock = utcnow) -> None:
        self.store, self.clock = store, clock
        self.clustered = store.dialect == "postgresql"
        self.id = str(uuid.uuid4())
        self.settings = config.instance
        self.site = config.instance.site

    def follow(self, config: Config) -> None:
        """A reload: a new site applies to the schedule and the site check now (the instance's
        row keeps the name and site it registered with)."""
        self.site = config.instance.site

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if not self.clustered:
            return
        now = self.clock()
        name = self.settings.label()
        row = InstanceRow(
            id=self.id,
            name=name,
            site=self.site,
            version=__version__,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=now,
            heartbeat_at=now,
        )
        await asyncio.to_thread(cluster.register, self.store, row)
        event(log, logging.INFO, "instance.registered", id=self.id, instance=name, site=self.site)

    async def stop(self) -> None:
        if self.clustered:
            await asyncio.to_thread(cluster.stopped, self.store, self.id, self.clock())

    async def heartbeat(self, config: Config, tracking: Tracking) -> None:
        """One beat: the heartbeat, then (on one instance per beat) the site check, when any
        endpoint has a site.  Alone on SQLite, this instance's site is the only one."""
        now = self.clock()
        if self.clustered:
            await asyncio.to_thread(cluster.beat, self.store, self.id, now)
        if not any(e.site for e in config.endpoints):
            return
        beat = self.settings.heartbeat
        if await self.claim(SITES, now + beat - min(beat / 2, timedelta(seconds=5))):
            live = None if self.clustered else [self.site]
            await asyncio.to_thread(check_sites, config, self.store, tracking, now, live)

    async def beating(self, current: Callable[[], tuple[Config, Tracking]]) -> None:
        """Beat until cancelled; ``current()`` gives the (config, tracking) of the moment."""
        while True:
            config, tracking = current()
            try:
                await self.heartbeat(config, tracking)
            except RelaycertError as exc:
                event(log, logging.ERROR, "instance.heartbeat_error", error=str(exc))
            await asyncio.sleep(config.instance.heartbeat.total_seconds())

    # -- claims --------------------------------------------------------------------------------

    async def claim(self, key: str, next_due: datetime) -> bool:
        """Whether this instance runs ``key`` now (always, when it is the only one)."""
        if not self.clustered:
            return True
        now = self.clock()
        return await asyncio.to_thread(cluster.claim, self.store, key, self.id, now, next_due)


def check_sites(
    config: Config,
    store: Store,
    tracking: Tracking,
    now: datetime,
    live: list[str | None] | None = None,
) -> ScanRecord:
    """Store the sites without a live instance as findings of the pseudo-endpoint ``(sites)``
    (so they alert, resolve and show like any other finding).  ``live``: the sites of the live
    instances (default: read from the heartbeats)."""
    if live is None:
        since = now - config.instance.dead_after
        live = [r.site for r in cluster.instances(store, since) if r.stopped_at is None]
    findings = rules.unwatched({e.name: e.site for e in config.endpoints}, live)
    target = ProbeTarget(SITES, "sites", 0, "sites", "sites", "", 0.0)
    result = ProbeResult(target, now, ProbeStatus.FILE)
    record = ScanRecord(result, (), tuple(findings), "sites", None, SITE_RULE_IDS)
    writes.record(
        store, [record], lambda session, ids: track(session, ids, [record], tracking, now)
    )
    return record
