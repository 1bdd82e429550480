"""Judging probe results with the rules: each distinct chain is parsed once, every observation of
a scan is judged at the same instant, and addresses of one endpoint see each other's leaves
(``peers``) so drift rules can tell a partial roll-out."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from cryptography import x509

from checks.base import (
    Baseline,
    DeliveryContract,
    Direction,
    Finding,
    Policy,
    ProbeStatus,
    TrustAnchors,
    worst,
)
from checks.certinfo import fingerprint
from checks.drift import baseline_of
from checks.registry import evaluate, evaluated
from monitor.config.loader import Config
from monitor.config.sections import EndpointConfig
from monitor.probe.trust import trust_anchors
from monitor.results import ProbeResult, ScanRecord

PARSED_KEPT = 1024  # distinct chains kept parsed (a fleet serves a few; certinfo.MEMO is 4096)


def parse_chain(
    cache: dict[tuple[bytes, ...], tuple[x509.Certificate, ...]], der: tuple[bytes, ...]
) -> tuple[x509.Certificate, ...]:
    """``der`` parsed, once per distinct chain while it is in ``cache`` (a scanner's, shared by
    its judges and its revocation checks)."""
    parsed = cache.get(der)
    if parsed is None:
        if len(cache) >= PARSED_KEPT:
            cache.clear()
        parsed = tuple(x509.load_der_x509_certificate(d) for d in der)
        cache[der] = parsed
    return parsed


class Judge:
    """Parses chains (once per distinct chain) and runs the rules with a fixed ``now``."""

    def __init__(
        self,
        config: Config,
        now: datetime,
        anchors: TrustAnchors | None = None,
        endpoints: Mapping[str, EndpointConfig] | None = None,
        chains: dict[tuple[bytes, ...], tuple[x509.Certificate, ...]] | None = None,
        routes: Mapping[str, DeliveryContract] | None = None,
    ) -> None:
        self.config = config
        roots = anchors or trust_anchors(config.resolved(config.trust), config.source)
        accepted = config.tenant.accepted_domains
        expiry = config.expiry.to_check()
        misses = config.capture.misses_critical if config.capture else 3
        grace = config.revocation.grace
        self.policies = {
            connector.name: Policy(
                now, accepted, connector.to_check(), expiry, roots, misses, revocation_grace=grace
            )
            for connector in config.connectors
        }
        self.default_policy = Policy(
            now, accepted, None, expiry, roots, misses, revocation_grace=grace
        )
        # Parsed chains by their DER.  The daemon's scanner passes one dict for every batch, so
        # a certificate served again is the same object: the rules' per-certificate answers
        # (checks.certinfo) are found, not computed again and remembered again for a new object.
        self._chains = chains if chains is not None else {}
        self._with_delivery: dict[tuple[str, str], Policy] = {}
        # Endpoints an outbound connector delivers to by MX (found in DNS by the scanner).
        self._routes = routes if routes is not None else {}
        # The scanner passes its own index: a daemon job judges one endpoint of thousands.
        self._endpoints = endpoints or {e.name: e for e in config.endpoints}

    def policy(self, endpoint: EndpointConfig) -> Policy:
        """The relay connector's policy, with the endpoint's delivery contract (and, for a
        certificate relaycert renews, the expiry warning held back until renewal is late)."""
        policy = self.policies.get(endpoint.connector or "", self.default_policy)
        expiry = self.config.expiry_for(endpoint.name)
        if expiry is not policy.expiry and expiry != policy.expiry:
            key = (endpoint.connector or "", f"expiry:{expiry.renew_fraction}")
            managed = self._with_delivery.get(key)
            if managed is None:
                managed = self._with_delivery[key] = replace(policy, expiry=expiry)
            policy = managed
        contract = self.config.delivery_for(endpoint) or self._routes.get(endpoint.name)
        if contract is None:
            return policy
        key = (endpoint.connector or "", f"{contract.connector}:{policy.expiry.renew_fraction}")
        found = self._with_delivery.get(key)
        if found is None:
            found = self._with_delivery[key] = replace(policy, delivery=contract)
        return found

    def chain(self, der: tuple[bytes, ...]) -> tuple[x509.Certificate, ...]:
        return parse_chain(self._chains, der)

    def judge(
        self,
        result: ProbeResult,
        endpoint: EndpointConfig,
        baseline: Baseline | None = None,
        peers: tuple[tuple[str, str], ...] = (),
        served: tuple[str, ...] = (),
    ) -> ScanRecord:
        """``result`` judged; an outbound check whose token arrived more than once is judged
        by each delivery that counts: the worse of them is the verdict (never the first), and
        no delivery's finding is dropped (:func:`_together`), so a replay cannot resolve what
        the relay's own delivery shows."""
        if result.rivals:
            judged = [
                self._judge(r, endpoint, baseline, peers, served) for r in (result, *result.rivals)
            ]
            return _together(max(judged, key=_badness), judged)  # the first of equally bad
        return self._judge(result, endpoint, baseline, peers, served)

    def _judge(
        self,
        result: ProbeResult,
        endpoint: EndpointConfig,
        baseline: Baseline | None,
        peers: tuple[tuple[str, str], ...],
        served: tuple[str, ...],
    ) -> ScanRecord:
        chain = self.chain(result.chain_der)
        policy = self.policy(endpoint)
        obs = result.observation(chain, baseline, peers, served)
        findings = tuple(evaluate(obs, policy))
        listener = result.target.direction is Direction.FROM_EXO
        return ScanRecord(
            result,
            chain,
            findings,
            result.target.mode,
            endpoint.connector,
            evaluated(obs),
            baseline,
            baseline_of(obs),
            policy.delivery if listener else None,
        )

    def judge_all(
        self,
        results: Sequence[ProbeResult],
        baselines: Mapping[tuple[str, str, str], Baseline],
    ) -> list[ScanRecord]:
        """Judge a batch.  Listener probes of one endpoint are each other's peers; an outbound
        check is compared with the leaves the endpoint's listener served in the batch."""
        served: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for result in results:
            if result.chain_der and result.target.direction is Direction.FROM_EXO:
                leaf = self.chain(result.chain_der)[0]
                served[result.target.endpoint].append((result.target.address, fingerprint(leaf)))
        records = []
        for result in results:
            target = result.target
            endpoint = self._endpoints[target.endpoint]
            baseline = baselines.get((target.endpoint, target.address, target.direction.value))
            if target.direction is Direction.TO_EXO:
                leaves = tuple(p[1] for p in served[target.endpoint])
                records.append(self.judge(result, endpoint, baseline, served=leaves))
            else:
                peers = tuple(p for p in served[target.endpoint] if p[0] != target.address)
                records.append(self.judge(result, endpoint, baseline, peers))
        return records


# Among deliveries as bad by their findings, no TLS is worse than no certificate, which is
# worse than one that was presented.
_STATUS_RANK = {ProbeStatus.NO_TLS: 2, ProbeStatus.NO_CLIENT_CERT: 1}


def _badness(record: ScanRecord) -> tuple[int, int]:
    """How bad one delivery's verdict is: by the severity of its findings, then its status."""
    severity = worst(f.severity for f in record.findings)
    return (severity.rank if severity else -1, _STATUS_RANK.get(record.result.status, 0))


def _together(verdict: ScanRecord, judged: Sequence[ScanRecord]) -> ScanRecord:
    """``verdict`` with every rule any delivery raised: per rule, the findings of the delivery
    where it is most severe (the verdict's own on a tie), so an alert the relay's delivery
    keeps open stays open whichever delivery is the verdict."""
    by_rule: dict[str, tuple[Finding, ...]] = {}
    for record in (verdict, *judged):
        for rule in dict.fromkeys(f.rule for f in record.findings):
            mine = tuple(f for f in record.findings if f.rule == rule)
            kept = by_rule.get(rule)
            if kept is None or _rank(mine) > _rank(kept):
                by_rule[rule] = mine
    findings = tuple(f for group in by_rule.values() for f in group)
    evaluated = frozenset().union(*(r.evaluated for r in judged))
    return replace(verdict, findings=findings, evaluated=evaluated)


def _rank(findings: Sequence[Finding]) -> int:
    return max(f.severity.rank for f in findings)
