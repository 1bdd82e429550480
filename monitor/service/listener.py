"""The daemon's HTTP listener (``[daemon] metrics_listen``): ``/metrics`` (Prometheus text
format, :mod:`.metrics`), ``/healthz``, and the status page ``/`` (:mod:`.statuspage`).

A small asyncio server, bounded: at most :data:`MAX_CONNECTIONS` connections (one more waiting
for its request closes the one that has waited longest), a request head within
:data:`REQUEST_TIMEOUT`, only GET.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest

from monitor.clock import Clock, utcnow
from monitor.config.loader import Config
from monitor.errors import RelaycertError
from monitor.logs import event
from monitor.service.metrics import StoreCollector
from monitor.store.engine import Store
from monitor.store.reads import status

log = logging.getLogger("relaycert.metrics")
MAX_REQUEST = 8192
# Connections open at once.  One more waiting for its request closes the one that has waited
# longest: a flood of connections that never send a request holds at most this many file
# descriptors, and a scraper, which sends its request at once, is still answered.
MAX_CONNECTIONS = 64
REQUEST_TIMEOUT = 10.0  # seconds for a whole request head


class MetricsServer:
    """``/metrics`` and ``/healthz`` on ``address:port``; ``healthy`` says why not, or ``None``."""

    def __init__(
        self,
        store: Store,
        lag: Callable[[], float | None],
        running: Callable[[], bool],
        config: Callable[[], Config] | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.store, self.running, self.config, self.clock = store, running, config, clock
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StoreCollector(store, lag, clock))
        self.server: asyncio.Server | None = None
        # connections whose request has not arrived yet, oldest first
        self._waiting: dict[asyncio.StreamWriter, None] = {}
        self._open = 0

    async def start(self, host: str, port: int) -> None:
        try:
            self.server = await asyncio.start_server(self._handle, host, port)
        except OSError as exc:
            from monitor.errors import ConfigError

            raise ConfigError(
                f"[daemon] metrics_listen: cannot listen on {host}:{port}: {exc.strerror}"
            ) from None
        event(log, logging.INFO, "metrics.listening", address=f"{host}:{self.port()}")

    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _status(self, writer: asyncio.StreamWriter, path: str) -> None:
        """The status page (:mod:`.statuspage`), its stylesheet, the newest archived report;
        for loopback peers only unless ``[daemon] status_page = "any"``."""
        from monitor.service import statuspage

        config = self.config() if self.config else None
        allowed = config.daemon.status_page if config else "off"
        peer = writer.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if allowed == "off" or (allowed == "loopback" and not _loopback(host)):
            await _respond(
                writer, 403, b"the status page is for loopback peers ([daemon] status_page)\n"
            )
            return
        assert config is not None
        headers = {"Content-Security-Policy": statuspage.CSP}
        if path == "/status.css":
            await _respond(writer, 200, statuspage.stylesheet(), "text/css; charset=utf-8", headers)
        elif path == "/report":
            newest = statuspage.newest_report(config)
            if newest is None:
                await _respond(writer, 404, b"no archived report yet ([reports])\n")
                return
            body = await asyncio.to_thread(newest.read_bytes)
            headers["Content-Security-Policy"] = statuspage.REPORT_CSP
            await _respond(writer, 200, body, "text/html; charset=utf-8", headers)
        else:
            now = self.clock()
            text = await asyncio.to_thread(statuspage.render, config, self.store, now)
            await _respond(writer, 200, text.encode(), "text/html; charset=utf-8", headers)

    def unhealthy(self) -> str | None:
        if not self.running():
            return "the scheduler is not running"
        try:
            status.ping(self.store)
        except RelaycertError as exc:
            return str(exc)
        return None

    def _admit(self, writer: asyncio.StreamWriter) -> None:
        """Count a new connection; at the limit, close the one waiting longest for its
        request (a connection answering already is never cut)."""
        self._open += 1
        if self._open > MAX_CONNECTIONS and self._waiting:
            oldest = next(iter(self._waiting))
            del self._waiting[oldest]
            oldest.transport.abort()  # its handler sees the connection end and returns
        self._waiting[writer] = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._admit(writer)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            self._waiting.pop(writer, None)
            request = head[:MAX_REQUEST].split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            path = request[1].split("?", 1)[0] if len(request) >= 2 else ""
            if request[0] != "GET":
                await _respond(writer, 405, b"only GET\n")
            elif path == "/metrics":
                body = await asyncio.to_thread(generate_latest, self.registry)
                await _respond(writer, 200, body, "text/plain; version=0.0.4; charset=utf-8")
            elif path in ("/", "/status.css", "/report"):
                await self._status(writer, path)
            elif path == "/healthz":
                problem = await asyncio.to_thread(self.unhealthy)
                if problem is None:
                    await _respond(writer, 200, b"ok\n")
                else:
                    await _respond(writer, 503, problem.encode("utf-8", "replace")[:2000] + b"\n")
            else:
                await _respond(writer, 404, b"try /, /metrics or /healthz\n")
        except (
            TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
        ):
            pass
        except RelaycertError as exc:  # the store failed while collecting
            await _respond(writer, 503, str(exc).encode("utf-8", "replace")[:2000] + b"\n")
        finally:
            self._waiting.pop(writer, None)
            self._open -= 1
            writer.close()


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    kind: str = "text/plain; charset=utf-8",
    headers: dict[str, str] | None = None,
) -> None:
    reason = {
        200: "OK",
        403: "Forbidden",
        404: "Not Found",
        405: "Method Not Allowed",
        503: "Service Unavailable",
    }
    extra = {
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        **(headers or {}),
    }
    lines = "".join(f"{k}: {v}\r\n" for k, v in extra.items())
    writer.write(
        f"HTTP/1.1 {status} {reason[status]}\r\nContent-Type: {kind}\r\n{lines}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(TimeoutError, ConnectionError):
        await asyncio.wait_for(writer.drain(), 10)
