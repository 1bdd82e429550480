"""One scan: resolve every endpoint, probe every address, judge, store.

The clock is read once per scan (``now``), so every observation of a scan is judged at the same
instant, and identical chains (the same certificate on many addresses) are parsed once.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from cryptography import x509

from checks.base import Baseline, Policy, TrustAnchors, worst
from checks.certinfo import fingerprint
from checks.drift import baseline_of
from checks.registry import evaluate, evaluated
from monitor.alerts.tracking import Tracking, load_baselines, track
from monitor.config.loader import Config, EndpointConfig
from monitor.errors import ProbeError
from monitor.probe.resolve import resolve
from monitor.probe.smtp import ProbeResult, ProbeTarget, probe_many, unresolved
from monitor.probe.trust import trust_anchors
from monitor.store.engine import ScanRecord, Store


def _target(config: Config, endpoint: EndpointConfig, address: str) -> ProbeTarget:
    return ProbeTarget(
        endpoint=endpoint.name,
        host=endpoint.host,
        port=endpoint.port,
        address=address,
        mode=endpoint.effective_mode,
        ehlo_name=endpoint.ehlo_name or config.probe.ehlo_name,
        timeout=config.endpoint_timeout(endpoint).total_seconds(),
    )


async def targets(
    config: Config, endpoints: Sequence[EndpointConfig]
) -> tuple[list[ProbeTarget], list[ProbeResult]]:
    """The addresses to probe, and a failed result for each endpoint that did not resolve."""

    async def one(endpoint: EndpointConfig) -> list[ProbeTarget] | ProbeResult:
        if endpoint.addresses is not None:
            return [_target(config, endpoint, a) for a in endpoint.addresses]
        timeout = config.endpoint_timeout(endpoint).total_seconds()
        try:
            addresses = await resolve(endpoint.host, endpoint.port, timeout, config.dns.servers())
        except ProbeError as exc:
            return unresolved(_target(config, endpoint, ""), exc.detail)
        return [_target(config, endpoint, a) for a in addresses]

    found: list[ProbeTarget] = []
    failed: list[ProbeResult] = []
    for item in await asyncio.gather(*(one(e) for e in endpoints)):
        if isinstance(item, ProbeResult):
            failed.append(item)
        else:
            found.extend(item)
    return found, failed


class Judge:
    """Parses chains (once per distinct chain) and runs the rules with a fixed ``now``."""

    def __init__(self, config: Config, now: datetime, anchors: TrustAnchors | None = None) -> None:
        self.config = config
        roots = anchors or trust_anchors(config)
        accepted = config.tenant.accepted_domains
        expiry = config.expiry.to_check()
        self.policies = {
            connector.name: Policy(now, accepted, connector.to_check(), expiry, roots)
            for connector in config.connectors
        }
        self.default_policy = Policy(now, accepted, None, expiry, roots)
        self._chains: dict[tuple[bytes, ...], tuple[x509.Certificate, ...]] = {}
        self._endpoints = {e.name: e for e in config.endpoints}

    def chain(self, der: tuple[bytes, ...]) -> tuple[x509.Certificate, ...]:
        parsed = self._chains.get(der)
        if parsed is None:
            parsed = tuple(x509.load_der_x509_certificate(d) for d in der)
            self._chains[der] = parsed
        return parsed

    def judge(
        self,
        result: ProbeResult,
        endpoint: EndpointConfig,
        baseline: Baseline | None = None,
        peers: tuple[tuple[str, str], ...] = (),
    ) -> ScanRecord:
        chain = self.chain(result.chain_der)
        policy = self.policies.get(endpoint.connector or "", self.default_policy)
        obs = replace(result.observation(chain), baseline=baseline, peers=peers)
        findings = tuple(evaluate(obs, policy))
        return ScanRecord(
            result,
            chain,
            findings,
            endpoint.effective_mode,
            endpoint.connector,
            evaluated(obs),
            baseline,
            baseline_of(obs),
        )

    def judge_all(
        self,
        results: Sequence[ProbeResult],
        baselines: Mapping[tuple[str, str], Baseline],
    ) -> list[ScanRecord]:
        """Judge a batch; addresses of one endpoint in the batch are each other's peers."""
        served: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for result in results:
            if result.chain_der:
                leaf = self.chain(result.chain_der)[0]
                served[result.target.endpoint].append((result.target.address, fingerprint(leaf)))
        records = []
        for result in results:
            target = result.target
            peers = tuple(p for p in served[target.endpoint] if p[0] != target.address)
            endpoint = self._endpoints[target.endpoint]
            records.append(
                self.judge(
                    result, endpoint, baselines.get((target.endpoint, target.address)), peers
                )
            )
        return records


def baselines_for(store: Store, names: Iterable[str]) -> dict[tuple[str, str], Baseline]:
    with store.session() as session:
        return load_baselines(session, store.endpoint_ids(names))


async def scan(
    config: Config,
    store: Store | None,
    endpoint_names: Sequence[str] | None = None,
    now: datetime | None = None,
    tracking: Tracking | None = None,
) -> list[ScanRecord]:
    """Probe, judge and (when ``store`` is given) store; results in configuration order.

    Without ``tracking``, a one-shot scan keeps baselines (drift) but does not touch alerts.
    """
    now = now or datetime.now(UTC)
    endpoints = [e for e in config.endpoints if not endpoint_names or e.name in endpoint_names]
    judge = Judge(config, now)
    found, failed = await targets(config, endpoints)
    results = failed + await probe_many(found, config.probe.concurrency)
    order = {e.name: i for i, e in enumerate(endpoints)}
    results.sort(key=lambda r: order[r.target.endpoint])
    names = [e.name for e in endpoints]
    baselines = await asyncio.to_thread(baselines_for, store, names) if store else {}
    records = judge.judge_all(results, baselines)
    if store is not None:
        tracking = tracking or Tracking(auto_accept=config.daemon.auto_accept_renewals)
        await asyncio.to_thread(
            store.record, records, lambda session, ids: track(session, ids, records, tracking, now)
        )
    return records


def exit_code(records: Sequence[ScanRecord]) -> int:
    """Monitoring-plugin convention: 0 ok/info, 1 warning, 2 critical, 3 unknown."""
    severity = worst(f.severity for r in records for f in r.findings)
    return severity.exit_code if severity else 0
