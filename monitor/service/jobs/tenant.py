"""The tenant jobs: the tenant drift check (:mod:`monitor.service.tenant_watch`) at start and at
every reload; a watch on the scheduled Exchange exports (connectors, accepted domains) that
reloads when one changed; and ``[tenant.graph]``'s refresh of the accepted domains from
Microsoft Graph every ``refresh``.  Their errors are logged; they never stop the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from monitor.errors import RelaycertError
from monitor.logs import event
from monitor.service import tenant_watch
from monitor.service.jobs.context import JobContext

log = logging.getLogger("relaycert.daemon")


class TenantJobs:
    def __init__(self, context: JobContext) -> None:
        self.context = context

    async def check(self) -> None:
        """Tenant drift since the last look; errors are logged."""
        context = self.context
        gen = context.gen
        try:
            record = await asyncio.to_thread(
                tenant_watch.check, gen.config, context.store, gen.tracking, context.clock()
            )
        except RelaycertError as exc:
            event(log, logging.ERROR, "tenant.error", error=str(exc))
            return
        for finding in record.findings:
            event(log, logging.INFO, "tenant.drift", rule=finding.rule, message=finding.message)
        context.wake_outbox.set()

    def check_soon(self) -> None:
        """A reload: check in the background (shutdown waits for it)."""
        self.context.track(asyncio.get_running_loop().create_task(self.check()))

    async def watch_files(self, reload: Callable[[], None], every: Callable[[], float]) -> None:
        """``reload()`` when a scheduled export of the tenant changed; look every ``every()``
        seconds."""

        def stamps() -> dict[Path, float]:
            found: dict[Path, float] = {}
            for path in self.context.gen.config.tenant_files():
                with contextlib.suppress(OSError):
                    found[path] = path.stat().st_mtime
            return found

        known = stamps()
        while True:
            await asyncio.sleep(every())
            now = stamps()
            if now != known:
                event(log, logging.INFO, "tenant.files_changed", files=" ".join(map(str, now)))
                reload()
                known = stamps()

    async def refresh_graph(self) -> None:
        """``[tenant.graph]``: fetch the accepted domains from Microsoft Graph every
        ``refresh``; the file watcher then reloads when they changed."""
        from monitor.config.graph import refresh

        while True:
            config = self.context.gen.config
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
