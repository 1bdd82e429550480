"""The built-in rules, in one literal registry of rule families with the directions each judges,
and the function that runs them all."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache

from checks import (
    capture,
    connector,
    crypto,
    dane,
    delivery,
    drift,
    identity,
    mtasts,
    outbound,
    revocation,
    session,
    trust,
    validity,
)
from checks.base import Direction, Finding, Observation, Policy, ProbeStatus, Rule

# Which observations a rule judges: the certificate the listener serves
# (from_exchange_online), the client certificate an outbound check captures
# (to_exchange_online), a certificate file (``None``: not presented in either direction yet).
Directions = frozenset[Direction | None]
EVERY: Directions = frozenset({Direction.FROM_EXO, Direction.TO_EXO, None})
NOT_CLIENT: Directions = frozenset({Direction.FROM_EXO, None})  # served, or a file
SERVED: Directions = frozenset({Direction.FROM_EXO})
CLIENT: Directions = frozenset({Direction.TO_EXO})


@dataclass(frozen=True)
class Family:
    """One rule family (a module of ``checks``), its rules and the directions they judge:
    ``directions`` for the whole family, ``narrower`` for rules of it that judge fewer."""

    name: str
    rules: tuple[Rule, ...]
    directions: Directions
    narrower: Mapping[str, Directions] = field(default_factory=dict)

    def directions_of(self, rule_id: str) -> Directions:
        return self.narrower.get(rule_id, self.directions)


# The served certificate is checked against the host name peers connect to; a client
# certificate is matched by the connector alone, and the listener's STARTTLS and handshake are
# not what an outbound check measures.  The delivery contract, DANE and MTA-STS are about the
# certificate the listener serves to Exchange Online.
FAMILIES: tuple[Family, ...] = (
    Family(
        "session",
        tuple(session.RULES),
        EVERY,
        {
            "tls.starttls_missing": NOT_CLIENT,
            "tls.handshake_failed": NOT_CLIENT,
            "tls.legacy_accepted": NOT_CLIENT,
        },
    ),
    Family("validity", tuple(validity.RULES), EVERY),
    Family("trust", tuple(trust.RULES), EVERY),
    Family("crypto", tuple(crypto.RULES), EVERY),
    Family("identity", tuple(identity.RULES), EVERY, {"cert.hostname_mismatch": NOT_CLIENT}),
    Family("connector", tuple(connector.RULES), EVERY),
    Family("drift", tuple(drift.RULES), EVERY, {"drift.nodes_differ": NOT_CLIENT}),
    Family("outbound", tuple(outbound.RULES), CLIENT),
    Family("capture", tuple(capture.RULES), CLIENT),
    Family("delivery", tuple(delivery.RULES), SERVED),
    Family("dane", tuple(dane.RULES), SERVED),
    Family("revocation", tuple(revocation.RULES), EVERY),
    Family("mtasts", tuple(mtasts.RULES), SERVED),
)


def _index(families: Iterable[Family]) -> tuple[dict[str, Rule], dict[str, Directions]]:
    index: dict[str, Rule] = {}
    directions: dict[str, Directions] = {}
    for family in families:
        for r in family.rules:
            if r.id in index:
                raise ValueError(f"duplicate rule id {r.id!r}")
            if not isinstance(r, Rule):
                raise TypeError(f"{r!r} does not implement checks.base.Rule")
            index[r.id] = r
            directions[r.id] = family.directions_of(r.id)
        unknown = set(family.narrower) - {r.id for r in family.rules}
        if unknown:
            raise ValueError(f"family {family.name!r} narrows rules it lacks: {sorted(unknown)}")
    return index, directions


_BUILTIN, _DIRECTIONS = _index(FAMILIES)
BUILTIN_RULES: Mapping[str, Rule] = _BUILTIN
# Every built-in rule's directions, as its family declares them.
DIRECTIONS: Mapping[str, Directions] = _DIRECTIONS

# Rules that judge the configuration, not the certificate: they run even when no chain was seen.
CONFIG_RULES = frozenset(
    {
        "connector.domain_not_registered",
        "connector.host_specific_name",
        "connector.subdomain_not_accepted",
        "delivery.smart_host_unmonitored",
    }
)
# Rules that run without a chain when the probe got as far as the session (or a message
# arrived): the session's, the outbound check's and its deliveries'.
WITHOUT_CHAIN_PREFIX = ("probe.", "tls.", "outbound.", "capture.")
# What a probe that measured nothing (a listener that could not be reached, a submission that
# failed, a probe message that never arrived) still says: how far it got.  No other rule is run,
# so no other alert (a certificate's, TLS's, "no client certificate") is resolved by a miss; the
# miss has its own alert.  A probe message that was submitted but never arrived did reach the
# server (``probe.unreachable`` is judged); one whose submission failed says nothing of delivery.
# A check whose token arrived only from peers outside ``relay_addresses`` is a miss that names
# them (the capture rules judge the deliveries, never a certificate).
REACHED = {
    ProbeStatus.UNREACHABLE: frozenset({"probe.unreachable"}),
    ProbeStatus.NOT_DELIVERED: frozenset(
        {"probe.unreachable", "outbound.not_delivered", "capture.unlisted_peer"}
    ),
}


def directions(rule_id: str) -> Directions:
    """The directions ``rule_id`` judges, as its family declares (a rule outside the registry
    judges every direction)."""
    return DIRECTIONS.get(rule_id, EVERY)


def applies(rule_id: str, direction: Direction | None) -> bool:
    """Does ``rule_id`` judge observations of ``direction`` (``None``: a certificate file)?"""
    return direction in directions(rule_id)


def _measured(obs: Observation) -> tuple[bool, frozenset[str] | None]:
    """(has a chain, the only rules a miss judges: ``None`` when something was measured)."""
    has_chain = bool(obs.chain) and obs.status in (ProbeStatus.OK, ProbeStatus.FILE)
    return has_chain, REACHED.get(obs.status)


def evaluated(obs: Observation, rules: Mapping[str, Rule] = BUILTIN_RULES) -> frozenset[str]:
    """The ids of the rules :func:`evaluate` runs for ``obs``.  A rule not run says nothing:
    a failed probe or a probe message that never arrived must not resolve any alert but its
    own (the certificate's, TLS's, the client certificate's stay as they are)."""
    if rules is BUILTIN_RULES:  # the same few sets for every observation of a scan
        ids = _builtin_plan(obs.direction, *_measured(obs))[0]
    else:
        ids = _selected(rules, obs.direction, *_measured(obs))
    if obs.revocation is not None and obs.revocation.status == "unknown":
        # A CRL that could not be read says nothing about revocation: an open cert.revoked
        # stays open (before: one failed refetch resolved it, the next fetch paged again).
        ids = ids - {"cert.revoked"}
    return ids


def _selected(
    rules: Mapping[str, Rule],
    direction: Direction | None,
    has_chain: bool,
    miss: frozenset[str] | None,
) -> frozenset[str]:
    def runs(rule_id: str) -> bool:
        if rule_id in CONFIG_RULES:
            return True
        if miss is not None:
            return rule_id in miss
        return has_chain or rule_id.startswith(WITHOUT_CHAIN_PREFIX)

    return frozenset(rule_id for rule_id in rules if applies(rule_id, direction) and runs(rule_id))


@cache
def _builtin_plan(
    direction: Direction | None, has_chain: bool, miss: frozenset[str] | None
) -> tuple[frozenset[str], tuple[Rule, ...]]:
    """The built-in rules run for a direction, with and without a chain, or for a miss."""
    ids = _selected(BUILTIN_RULES, direction, has_chain, miss)
    return ids, tuple(r for rule_id, r in BUILTIN_RULES.items() if rule_id in ids)


def evaluate(
    obs: Observation, policy: Policy, rules: Mapping[str, Rule] = BUILTIN_RULES
) -> list[Finding]:
    """Run every rule on ``obs``; certificate rules only when a chain was captured."""
    if rules is BUILTIN_RULES:
        plan = _builtin_plan(obs.direction, *_measured(obs))[1]
    else:
        run = evaluated(obs, rules)
        plan = tuple(r for rule_id, r in rules.items() if rule_id in run)
    findings: list[Finding] = []
    for r in plan:
        findings.extend(r.evaluate(obs, policy))
    if obs.direction is Direction.FROM_EXO and (policy.delivery is not None or obs.mtasts):
        findings = delivery.under_contract(findings, policy.delivery, mtasts.enforced(obs))
    return findings
