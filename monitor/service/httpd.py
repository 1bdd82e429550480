"""The HTTP server under the daemon's listener (:mod:`.listener`): aiohttp's, with the rules every
route, error page and connection gets, in this one module.

- **Headers.** Every response, aiohttp's own error pages (400 for a malformed request, 404, 405,
  413, 500) included, carries :data:`SECURITY` and a Content-Security-Policy: the one its
  handler chose (the status page's), else :data:`STRICT_CSP`.
- **Host**: a request is answered only when its Host is an IP address literal, ``localhost`` or
  one of ``[daemon] http_hosts``; otherwise 421 (:mod:`.http_hosts` says why: DNS rebinding).
  An HTTP/1.0 request without Host (``check_http -I``) is answered: browsers always send one
  (aiohttp's parser refuses an HTTP/1.1 request without it, 400).
- **Limits** (:class:`Limits`): a declared request body over ``body`` is refused (413, and
  aiohttp refuses to read more than that); request line and header lines are capped by aiohttp's
  parser (400); a connection must complete its request head within ``request_timeout`` of
  opening or of its previous answer, else it is closed.
- **Connections**: at most ``connections`` open.  One more closes the connection that has been
  idle longest (no request being answered: waiting for its request head, or kept open between
  requests), answering it ``503`` with ``Retry-After`` first, so a request it may have sent
  already is answered, never dropped; when none is idle, the newcomer gets that ``503``.  A flood
  of connections that never send a request holds at most ``connections`` file descriptors, and a
  scraper, which sends its request at once, is still answered.  A request must be answered
  within ``answer_timeout``: a client that stops reading its answer (a large ``/metrics``) is
  closed then, so it cannot hold a connection slot for good (:mod:`.gate` keeps the count).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, MutableMapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from monitor.logs import event
from monitor.service.gate import Gate, Limits
from monitor.service.http_hosts import host_allowed

log = logging.getLogger("relaycert.http")
STRICT_CSP = "default-src 'none'; frame-ancestors 'none'"
SECURITY = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Server": "relaycert",
}


def secure(headers: MutableMapping[str, str]) -> None:
    """The security headers, on one response."""
    headers.update(SECURITY)
    headers.setdefault("Content-Security-Policy", STRICT_CSP)


def application(hosts: Callable[[], Collection[str]], limits: Limits) -> web.Application:
    """An application whose every answer follows the rules above; add routes to it."""
    app = web.Application(client_max_size=limits.body, middlewares=[_guard(hosts, limits)])
    app.on_response_prepare.append(_prepared)
    return app


async def _prepared(request: web.Request, response: web.StreamResponse) -> None:
    secure(response.headers)


def _guard(hosts: Callable[[], Collection[str]], limits: Limits) -> Middleware:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if isinstance(request.protocol, Connection):
            request.protocol.gate.answering(request.protocol)
        host = request.headers.get("Host")
        old_client = host is None and request.version < (1, 1)  # no browser sends that
        if not old_client and not host_allowed(host, hosts()):
            raise web.HTTPMisdirectedRequest(
                text=f"Host {(host or '')[:100]!r} does not name this listener: add the name to "
                "[daemon] http_hosts, or use its address\n"
            )
        declared = request.content_length or 0
        if declared > limits.body:
            raise web.HTTPRequestEntityTooLarge(limits.body, declared)
        return await handler(request)

    return guard


def _refusal() -> bytes:
    body = b"the HTTP listener is at its connection limit; retry in a second\n"
    headers = {
        "Content-Type": "text/plain; charset=utf-8",
        "Content-Length": str(len(body)),
        "Retry-After": "1",
        "Connection": "close",
    }
    secure(headers)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"HTTP/1.1 503 Service Unavailable\r\n{head}\r\n".encode() + body


REFUSAL = _refusal()


class Connection(web.RequestHandler):
    """aiohttp's protocol for one connection, reporting to the :class:`Gate`; its own 4xx
    error pages carry the security headers and log no traceback (the Internet sends garbage)."""

    def __init__(self, gate: Gate, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.gate = gate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.gate.opened(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.gate.closed(self)
        super().connection_lost(exc)

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        answered, reset = await super().finish_response(request, resp, start_time)
        if not reset and answered.keep_alive:
            self.gate.wait(self)
        return answered, reset

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        self.gate.busy(self)
        if status >= 500:
            response = super().handle_error(request, status, exc, message)
        else:
            event(
                log,
                logging.DEBUG,
                "http.bad_request",
                peer=request.remote,
                status=status,
                error=message,
            )
            response = web.Response(status=status, text=f"{status}: {message or 'bad request'}\n")
            response.force_close()
        secure(response.headers)
        return response

    def refuse(self) -> None:
        """Answer 503 (whatever was asked, if anything) and close."""
        if self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(OSError, RuntimeError):
                self.transport.write(REFUSAL)
        self.force_close()

    def log_access(self, *args: Any, **kwargs: Any) -> None:
        """No access log: a scrape every few seconds is not news."""


class Listener:
    """An :func:`application` served on ``host:port`` through the :class:`Gate`."""

    def __init__(self, app: web.Application, limits: Limits) -> None:
        self.app, self.limits = app, limits
        self.runner: web.AppRunner | None = None
        self.server: asyncio.Server | None = None
        self.gate: Gate | None = None

    async def start(self, host: str, port: int) -> None:
        """Listen; :class:`OSError` when the address cannot be bound."""
        loop = asyncio.get_running_loop()
        runner = self.runner = web.AppRunner(
            self.app, handle_signals=False, shutdown_timeout=self.limits.request_timeout
        )
        await runner.setup()
        manager, gate = runner.server, Gate(self.limits, loop)
        assert manager is not None
        self.gate = gate
        options: dict[str, Any] = {
            "loop": loop,
            "logger": log,
            # aiohttp's own idle timer, behind the gate's: it closes at twice the timeout
            "keepalive_timeout": 2 * self.limits.request_timeout,
            "max_line_size": self.limits.line,
            "max_field_size": self.limits.line,
            "lingering_time": 2.0,  # reading an unread request body after answering
        }
        try:
            self.server = await loop.create_server(
                lambda: Connection(gate, manager, **options),
                host,
                port,
                backlog=self.limits.connections,
            )
        except OSError:
            await runner.cleanup()
            raise

    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.gate is not None:
            self.gate.close()
        if self.server is not None:
            await self.server.wait_closed()
