"""What the delivery direction is judged by, gathered while the probes run: which outbound
connector delivers to each endpoint (by smart host, from the configuration; or by MX, from
DNS), the TLSA records of the hosts delivered to with DANE, and the MTA-STS policies of the
recipient domains delivered to by MX.

MX answers and MTA-STS policies are remembered by the scanner for a while (``MX_KEPT``; a
policy until its ``max_age``, at most ``POLICY_KEPT``), so a daemon probing an endpoint every
few minutes does not fetch a domain's policy every time.  TLSA records are looked up at every
probe: they are what a renewal or a key change breaks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

from checks.base import DeliveryContract, Direction, MtaStsEvidence, TlsaEvidence, TrustAnchors
from monitor.config.loader import Config
from monitor.config.sections import EndpointConfig
from monitor.pipeline.contained import contained, lookup_failed
from monitor.results import ProbeResult

MX_KEPT = 300.0  # seconds an MX answer is used again
POLICY_KEPT = 3600.0  # seconds a policy is used again at most (its max_age may be shorter)


def _host(name: str) -> str:
    return name.lower().rstrip(".")


def _tlsa_failed(name: str, reason: str) -> TlsaEvidence:
    return TlsaEvidence(name, error=reason)


def _policy_failed(domain: str, reason: str) -> MtaStsEvidence:
    return MtaStsEvidence(domain, error=reason)


@dataclass
class Evidence:
    """Per host: the TLSA evidence and the MTA-STS policies that apply to it."""

    tlsa: dict[str, TlsaEvidence] = field(default_factory=dict)
    mtasts: dict[str, tuple[MtaStsEvidence, ...]] = field(default_factory=dict)

    def attach(self, results: Sequence[ProbeResult]) -> None:
        """Give each listener result its host's evidence."""
        if not self.tlsa and not self.mtasts:
            return
        for result in results:
            if result.target.direction is Direction.FROM_EXO:
                host = _host(result.target.host)
                result.tlsa = self.tlsa.get(host)
                result.mtasts = self.mtasts.get(host, ())


@dataclass
class DeliveryLookups:
    """The scanner's memory of MX routes and policies, and the routes found (endpoint name ->
    the contract of the connector that delivers to it by MX)."""

    config: Config
    anchors: TrustAnchors
    routes: dict[str, DeliveryContract] = field(default_factory=dict)
    _mx: dict[str, tuple[float, list[str]]] = field(default_factory=dict)
    _policies: dict[str, tuple[float, MtaStsEvidence]] = field(default_factory=dict)

    def contract(self, endpoint: EndpointConfig) -> DeliveryContract | None:
        return self.config.delivery_for(endpoint) or self.routes.get(endpoint.name)

    async def gather(self, endpoints: Sequence[EndpointConfig]) -> Evidence:
        """Routes by MX for ``endpoints``, then their TLSA records and MTA-STS policies.  It
        never raises (but a cancellation): each lookup is :func:`.contained`, and a defect in
        the planning around them leaves the probes without delivery evidence, logged."""
        try:
            return await self._gather(endpoints)
        except Exception as exc:
            lookup_failed("delivery lookups", exc)
            return Evidence()

    async def _gather(self, endpoints: Sequence[EndpointConfig]) -> Evidence:
        config = self.config
        timeout = config.probe.timeout.total_seconds()
        servers = config.dns.servers()
        mx_connectors = [c for c in config.delivery_connectors if c.use_mx_record]
        by_host: dict[str, list[tuple[str, str]]] = {}  # host -> (connector, domain)
        if mx_connectors:
            domains = sorted({d for c in mx_connectors for d in c.recipient_domains if d != "*"})
            found = await asyncio.gather(
                *(
                    contained(f"MX lookup of {d}", self._mx_of(d, timeout, servers), lambda _: [])
                    for d in domains
                )
            )
            hosts_of = dict(zip(domains, found, strict=True))
            for connector in mx_connectors:
                for domain in connector.recipient_domains:
                    for host in hosts_of.get(domain, []):
                        by_host.setdefault(host, []).append((connector.name, domain))
        named = {c.name: c for c in mx_connectors}
        probed = {_host(e.host) for e in config.endpoints} | {
            a for e in config.endpoints for a in (e.addresses or ())
        }
        unmonitored = {  # MX hosts of a connector's domains that no endpoint probes
            name: tuple(
                sorted(
                    {h for h, rs in by_host.items() if h not in probed for c, _ in rs if c == name}
                )
            )
            for name in named
        }
        wanted_policies: dict[str, set[str]] = {}  # host -> domains whose policy applies
        for endpoint in endpoints:
            host = _host(endpoint.host)
            routes = by_host.get(host)
            if not routes:
                continue
            if config.delivery_for(endpoint) is None:
                first = routes[0][0]
                self.routes[endpoint.name] = named[first].to_contract(unmonitored[first])
            for connector_name, domain in routes:
                if named[connector_name].mta_sts_mode != "None":
                    wanted_policies.setdefault(host, set()).add(domain)
        dane_hosts = sorted(
            {
                _host(e.host)
                for e in endpoints
                if (contract := self.contract(e)) is not None and contract.dane_mode != "None"
            }
        )
        domains = sorted({d for ds in wanted_policies.values() for d in ds})
        from monitor.probe.dane import lookup, tlsa_name

        tlsa, policies = await asyncio.gather(
            asyncio.gather(
                *(
                    contained(
                        f"TLSA lookup of {tlsa_name(h)}",
                        lookup(h, timeout, servers),
                        partial(_tlsa_failed, tlsa_name(h)),
                    )
                    for h in dane_hosts
                )
            ),
            asyncio.gather(
                *(
                    contained(
                        f"MTA-STS policy lookup of {d}",
                        self._policy_of(d, timeout, servers),
                        partial(_policy_failed, d),
                    )
                    for d in domains
                )
            ),
        )
        evidence = Evidence(tlsa=dict(zip(dane_hosts, tlsa, strict=True)))
        policy_of = dict(zip(domains, policies, strict=True))
        for host, wanted in wanted_policies.items():
            applying = tuple(policy_of[d] for d in sorted(wanted) if policy_of[d].present)
            if applying:
                evidence.mtasts[host] = applying
        return evidence

    async def _mx_of(
        self, domain: str, timeout: float, servers: tuple[tuple[str, int], ...]
    ) -> list[str]:
        import dns.exception

        from monitor.probe.mtasts import mx_hosts

        known = self._mx.get(domain)
        if known is not None and time.monotonic() - known[0] < MX_KEPT:
            return known[1]
        try:
            hosts = await mx_hosts(domain, timeout, servers)
        except dns.exception.DNSException:
            return known[1] if known is not None else []  # the last answer, else none
        self._mx[domain] = (time.monotonic(), hosts)
        return hosts

    async def _policy_of(
        self, domain: str, timeout: float, servers: tuple[tuple[str, int], ...]
    ) -> MtaStsEvidence:
        from monitor.probe.mtasts import policy

        known = self._policies.get(domain)
        if known is not None and time.monotonic() < known[0]:
            return known[1]
        found = await policy(domain, timeout, self.anchors, servers)
        keep = min(float(found.max_age or 0), POLICY_KEPT) if found.error is None else 0.0
        self._policies[domain] = (time.monotonic() + keep, found)
        return found
