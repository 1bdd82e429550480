"""The daemon's HTTP endpoint for monitoring systems: ``/metrics`` (Prometheus text format,
prometheus-client) and ``/healthz``.

Metrics are read from the store at each scrape (a collector, not counters kept in memory), so
they always equal the stored state, also after a restart.  Names follow blackbox_exporter and
ssl_exporter where the meaning is the same (``probe_success``-like, ``..._not_after``); labels are
bounded: endpoint, address, direction, rule, severity, renewal (never free text).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text
from sqlmodel import col

from checks.base import ProbeStatus
from monitor import __version__
from monitor.errors import RelaycertError
from monitor.logs import event
from monitor.renewal.outcome import FAILED_RESULTS
from monitor.store import captures, queries
from monitor.store.engine import Store
from monitor.store.models import OutboxRow

log = logging.getLogger("relaycert.metrics")
LABELS = ["endpoint", "address", "direction"]
SERVED = "from_exchange_online"
# The status of the pseudo-endpoint "(tenant)": findings from the configuration, no probe.
NOT_PROBED = ProbeStatus.FILE.value
MAX_REQUEST = 8192
# Connections open at once.  One more waiting for its request closes the one that has waited
# longest: a flood of connections that never send a request holds at most this many file
# descriptors, and a scraper, which sends its request at once, is still answered.
MAX_CONNECTIONS = 64
FAILED = frozenset(r.value for r in FAILED_RESULTS)  # a quiet check (unchecked) is no failure
REQUEST_TIMEOUT = 10.0  # seconds for a whole request head


class StoreCollector(Collector):
    """Per address and direction: certificate expiry, findings, probe success, duration and
    time; daemon-wide: scheduler lag, outbox depth and failures, renewal outcomes."""

    def __init__(self, store: Store, lag: Callable[[], float | None]) -> None:
        self.store, self.lag = store, lag

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = datetime.now(UTC)
        build = GaugeMetricFamily(
            "relaycert_build_info",
            "Always 1; the relaycert and Python versions as labels.",
            labels=["version", "python"],
        )
        build.add_metric([__version__, platform.python_version()], 1.0)
        yield build
        not_after = GaugeMetricFamily(
            "relaycert_cert_not_after_timestamp_seconds",
            "Leaf certificate notAfter (Unix time); the time left is this minus time().",
            labels=LABELS,
        )
        success = GaugeMetricFamily(
            "relaycert_probe_success",
            "1 when the last probe reached TLS with a certificate.",
            labels=LABELS,
        )
        duration = GaugeMetricFamily(
            "relaycert_probe_duration_seconds", "Duration of the last probe.", labels=LABELS
        )
        last = GaugeMetricFamily(
            "relaycert_probe_last_timestamp_seconds",
            "When the address was last probed.",
            labels=LABELS,
        )
        findings = GaugeMetricFamily(
            "relaycert_findings",
            "Current findings by rule and severity.",
            labels=[*LABELS, "rule", "severity"],
        )
        contract = GaugeMetricFamily(
            "relaycert_delivery_contract",
            "1 per served address: the delivery contract its certificate was judged by "
            '(connector "" when none is known; tls_settings "" when not set).',
            labels=[*LABELS, "connector", "tls_settings", "dane_mode", "mta_sts_mode"],
        )
        with self.store.reading("collecting metrics") as session:
            endpoints = {e.id: e.name for e in queries.endpoints_by_name(session).values()}
            rows = queries.latest_observations(session)
            known = queries.last_known(session, rows)
            read = [*rows, *known.values()]
            found = queries.findings_of(session, [r.id for r in read])
            expiry = queries.not_after(session, {r.leaf_sha256 for r in read if r.leaf_sha256})
            outbox = dict(
                session.execute(
                    select(col(OutboxRow.status), func.count()).group_by(col(OutboxRow.status))
                ).all()
            )
        for row in rows:
            labels = [endpoints.get(row.endpoint_id, "?"), row.address, row.direction]
            where = (row.endpoint_id, row.address, row.direction)
            # During a miss the last known certificate's expiry and findings are still exported
            # (a gauge that vanishes in an outage cannot fire an alert); the miss's own finding
            # and probe_success 0 say that it is not measured now.
            known_row = known.get(where) if row.status in queries.MISSES else None
            ends = expiry.get((known_row or row).leaf_sha256 or "")
            if ends is not None:
                not_after.add_metric(labels, ends.timestamp())
            if row.status != NOT_PROBED:  # the tenant's drift check is no probe
                success.add_metric(labels, 1.0 if row.status == "ok" else 0.0)
                duration.add_metric(labels, row.duration_ms / 1000)
                last.add_metric(labels, (row.last_seen_at or row.started_at).timestamp())
            counts: dict[tuple[str, str], int] = {}
            before = found.get(known_row.id or 0, []) if known_row else []
            for finding in found.get(row.id or 0, []) + before:
                key = (finding.rule, finding.severity)
                counts[key] = counts.get(key, 0) + 1
            for (rule, severity), count in counts.items():
                findings.add_metric([*labels, rule, severity], count)
            stored = (known_row or row).session
            delivery = stored.get("delivery") if isinstance(stored, dict) else None
            if row.direction == SERVED:  # bounded labels: configured names and enum values
                delivery = delivery if isinstance(delivery, dict) else {}
                contract.add_metric(
                    [
                        *labels,
                        str(delivery.get("connector") or ""),
                        str(delivery.get("tls_settings") or ""),
                        str(delivery.get("dane_mode") or ""),
                        str(delivery.get("mta_sts_mode") or ""),
                    ],
                    1.0,
                )
        yield from (not_after, success, duration, last, findings, contract)
        depth = GaugeMetricFamily(
            "relaycert_outbox_messages", "Outbox messages by status.", labels=["status"]
        )
        for status in ("pending", "sent", "failed"):
            depth.add_metric([status], float(outbox.get(status, 0)))
        yield depth
        yield GaugeMetricFamily(
            "relaycert_unattributed_captures",
            "Messages at the capture listener in the last 24 hours that no valid token "
            "attributes to an outbound check (test sends, strays, forgeries, replays).",
            value=float(captures.unattributed_count(self.store, now - timedelta(days=1))),
        )
        lag = self.lag()
        if lag is not None:
            yield GaugeMetricFamily(
                "relaycert_scheduler_lag_seconds",
                "How late the last scheduled probe started.",
                value=lag,
            )
        renewal = GaugeMetricFamily(
            "relaycert_renewal_last_success",
            "0 when the renewal's last recorded attempt failed (a check that could not reach "
            "the CA while nothing was due is no failure).",
            labels=["renewal"],
        )
        seen: set[str] = set()
        for attempt in queries.renewals(self.store, limit=200):
            if attempt.name not in seen:
                seen.add(attempt.name)
                ok = attempt.outcome not in FAILED
                renewal.add_metric([attempt.name], 1.0 if ok else 0.0)
        yield renewal


class MetricsServer:
    """``/metrics`` and ``/healthz`` on ``address:port``; ``healthy`` says why not, or ``None``."""

    def __init__(
        self, store: Store, lag: Callable[[], float | None], running: Callable[[], bool]
    ) -> None:
        self.store, self.running = store, running
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StoreCollector(store, lag))
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

    def unhealthy(self) -> str | None:
        if not self.running():
            return "the scheduler is not running"
        try:
            with self.store.reading("health check") as session:
                session.execute(text("SELECT 1"))
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
            elif path == "/healthz":
                problem = await asyncio.to_thread(self.unhealthy)
                if problem is None:
                    await _respond(writer, 200, b"ok\n")
                else:
                    await _respond(writer, 503, problem.encode("utf-8", "replace")[:2000] + b"\n")
            else:
                await _respond(writer, 404, b"try /metrics or /healthz\n")
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


async def _respond(
    writer: asyncio.StreamWriter, status: int, body: bytes, kind: str = "text/plain; charset=utf-8"
) -> None:
    reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
    writer.write(
        f"HTTP/1.1 {status} {reason[status]}\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(TimeoutError, ConnectionError):
        await asyncio.wait_for(writer.drain(), 10)
