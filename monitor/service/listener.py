"""The daemon's HTTP listener (``[daemon] metrics_listen``): ``/metrics`` (Prometheus text
format, :mod:`.metrics`), ``/healthz``, and the status page ``/`` (:mod:`.statuspage`).

The routes of an aiohttp application; the rules every answer and connection follows (security
headers, the Host check against ``[daemon] http_hosts``, body, header and connection limits, the
request timeout) are :mod:`.httpd`'s.  Only GET and HEAD are routed (405 with ``Allow``
otherwise).  Blocking work (a store read, rendering the page) runs in threads, at most
:attr:`.Limits.threads` at once; a store failure is a 503 with its message.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Collection
from typing import ParamSpec, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, generate_latest

from monitor.clock import Clock, utcnow
from monitor.config.loader import Config
from monitor.errors import ConfigError, RelaycertError
from monitor.logs import event
from monitor.service import httpd, statuspage
from monitor.service.gate import Limits
from monitor.service.metrics import StoreCollector
from monitor.store.engine import Store
from monitor.store.reads import status

log = logging.getLogger("relaycert.metrics")
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
P = ParamSpec("P")
T = TypeVar("T")


class MetricsServer:
    """``/metrics``, ``/healthz`` and the status page on ``address:port``; :meth:`unhealthy`
    says why not healthy, or ``None``."""

    def __init__(
        self,
        store: Store,
        lag: Callable[[], float | None],
        running: Callable[[], bool],
        config: Callable[[], Config] | None = None,
        clock: Clock = utcnow,
        limits: Limits = Limits(),  # noqa: B008 - frozen, shared safely
        problem: Callable[[], str | None] | None = None,
    ) -> None:
        self.store, self.running, self.config, self.clock = store, running, config, clock
        self.limits = limits
        # Why the daemon's jobs are not getting done (a job failing run after run), or None.
        self.problem = problem
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StoreCollector(store, lag, clock))
        self.http: httpd.Listener | None = None
        self._work = asyncio.Semaphore(limits.threads)

    async def start(self, host: str, port: int) -> None:
        self.http = httpd.Listener(self.application(), self.limits)
        try:
            await self.http.start(host, port)
        except OSError as exc:
            raise ConfigError(
                f"[daemon] metrics_listen: cannot listen on {host}:{port}: {exc.strerror}"
            ) from None
        event(log, logging.INFO, "metrics.listening", address=f"{host}:{self.port()}")

    def port(self) -> int:
        assert self.http is not None
        return self.http.port()

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()

    def application(self) -> web.Application:
        app = httpd.application(self._hosts, self.limits)
        app.middlewares.append(_answers)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        for path in ("/", "/status.css", "/report"):
            app.router.add_get(path, self._status)
        return app

    def _hosts(self) -> Collection[str]:
        """``[daemon] http_hosts`` of the configuration in force (a reload applies at once)."""
        return self.config().daemon.http_hosts if self.config else ()

    def unhealthy(self) -> str | None:
        if not self.running():
            return "the scheduler is not running"
        failing = self.problem() if self.problem is not None else None
        if failing is not None:
            return failing
        try:
            status.ping(self.store)
        except RelaycertError as exc:
            return str(exc)
        return None

    async def _thread(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``work`` in a thread, when one of :attr:`.Limits.threads` is free: the daemon's own
        jobs use the same default executor."""
        async with self._work:
            return await asyncio.to_thread(work, *args, **kwargs)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = await self._thread(generate_latest, self.registry)
        return web.Response(body=body, headers={"Content-Type": METRICS_TYPE})

    async def _healthz(self, request: web.Request) -> web.Response:
        problem = await self._thread(self.unhealthy)
        if problem is None:
            return _text(200, "ok\n")
        return _text(503, problem)

    async def _status(self, request: web.Request) -> web.Response:
        """The status page (:mod:`.statuspage`), its stylesheet, the newest archived report;
        for loopback peers only unless ``[daemon] status_page = "any"``."""
        config = self.config() if self.config else None
        allowed = config.daemon.status_page if config else "off"
        if allowed == "off" or (allowed == "loopback" and not _loopback(request.remote or "")):
            return _text(403, "the status page is for loopback peers ([daemon] status_page)\n")
        assert config is not None
        if request.path == "/status.css":
            css = await self._thread(statuspage.stylesheet)
            return _page(css, "text/css", statuspage.CSP)
        if request.path == "/report":
            newest = await self._thread(statuspage.newest_report, config)
            if newest is None:
                return _text(404, "no archived report yet ([reports])\n")
            return _page(await self._thread(newest.read_bytes), "text/html", statuspage.REPORT_CSP)
        text = await self._thread(statuspage.render, config, self.store, self.clock())
        return _page(text.encode(), "text/html", statuspage.CSP)


@web.middleware
async def _answers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A store failure is a 503 with its message; an unknown path says where to look."""
    try:
        return await handler(request)
    except RelaycertError as exc:  # the store failed while collecting
        return _text(503, str(exc))
    except web.HTTPNotFound:
        return _text(404, "try /, /metrics or /healthz\n")


def _text(status: int, text: str) -> web.Response:
    body = text.encode("utf-8", "replace")[:2000]
    if not body.endswith(b"\n"):
        body += b"\n"
    return web.Response(status=status, body=body, content_type="text/plain", charset="utf-8")


def _page(body: bytes, kind: str, csp: str) -> web.Response:
    return web.Response(
        body=body, content_type=kind, charset="utf-8", headers={"Content-Security-Policy": csp}
    )


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False
