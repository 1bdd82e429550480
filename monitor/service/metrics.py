"""What ``/metrics`` exports (Prometheus text format, prometheus-client; served by
:mod:`.listener`).

Metrics are read from the store at each scrape (a collector, not counters kept in memory), so
they always equal the stored state, also after a restart.  Names follow blackbox_exporter and
ssl_exporter where the meaning is the same (``probe_success``-like, ``..._not_after``); labels are
bounded: endpoint, address, direction, rule, severity, renewal (never free text).
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable, Iterator
from datetime import timedelta

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from checks.base import ProbeStatus
from monitor import __version__
from monitor.clock import Clock, utcnow
from monitor.renewal.outcome import FAILED_RESULTS
from monitor.store import captures, queries
from monitor.store.engine import Store
from monitor.store.reads import metrics
from monitor.store.reads.renewal import renewals

log = logging.getLogger("relaycert.metrics")
LABELS = ["endpoint", "address", "direction"]
SERVED = "from_exchange_online"
# The status of the pseudo-endpoint "(tenant)": findings from the configuration, no probe.
NOT_PROBED = ProbeStatus.FILE.value
FAILED = frozenset(r.value for r in FAILED_RESULTS)  # a quiet check (unchecked) is no failure


class StoreCollector(Collector):
    """Per address and direction: certificate expiry, findings, probe success, duration and
    time; daemon-wide: scheduler lag, outbox depth and failures, renewal outcomes."""

    def __init__(
        self, store: Store, lag: Callable[[], float | None], clock: Clock = utcnow
    ) -> None:
        self.store, self.lag, self.clock = store, lag, clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.clock()
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
        scraped = metrics.scrape(self.store)
        endpoints, rows, known = scraped.endpoints, scraped.rows, scraped.known
        found, expiry, outbox = scraped.findings, scraped.expiry, scraped.outbox
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
        for attempt in renewals(self.store, limit=200):
            if attempt.name not in seen:
                seen.add(attempt.name)
                ok = attempt.outcome not in FAILED
                renewal.add_metric([attempt.name], 1.0 if ok else 0.0)
        yield renewal
