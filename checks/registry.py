"""The built-in rules, in one literal mapping, and the function that runs them all."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache

from checks import (
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


def _index(rules: Iterable[Rule]) -> dict[str, Rule]:
    index: dict[str, Rule] = {}
    for r in rules:
        if r.id in index:
            raise ValueError(f"duplicate rule id {r.id!r}")
        if not isinstance(r, Rule):
            raise TypeError(f"{r!r} does not implement checks.base.Rule")
        index[r.id] = r
    return index


_BUILTIN: list[Rule] = [
    *session.RULES,
    *validity.RULES,
    *trust.RULES,
    *crypto.RULES,
    *identity.RULES,
    *connector.RULES,
    *drift.RULES,
    *outbound.RULES,
    *delivery.RULES,
    *dane.RULES,
    *revocation.RULES,
    *mtasts.RULES,
]
BUILTIN_RULES: Mapping[str, Rule] = _index(_BUILTIN)

# Rules that judge the configuration, not the certificate: they run even when no chain was seen.
CONFIG_RULES = frozenset(
    {
        "connector.domain_not_registered",
        "connector.host_specific_name",
        "connector.subdomain_not_accepted",
        "delivery.smart_host_unmonitored",
    }
)

# Rules that only make sense for one direction.  The served certificate is checked against the
# host name peers connect to; a client certificate is matched by the connector alone, and the
# listener's STARTTLS and handshake are not what an outbound check measures.
SERVED_ONLY = frozenset(
    {
        "cert.hostname_mismatch",
        "tls.starttls_missing",
        "tls.handshake_failed",
        "tls.legacy_accepted",
        "drift.nodes_differ",
    }
)
CLIENT_ONLY_PREFIX = "outbound."
# The delivery contract and DANE are about the certificate the listener serves to Exchange
# Online.
SERVED_ONLY_PREFIX = ("delivery.", "dane.", "mtasts.")
# What a probe that measured nothing (a listener that could not be reached, a submission that
# failed, a probe message that never arrived) still says: how far it got.  No other rule is run,
# so no other alert (a certificate's, TLS's, "no client certificate") is resolved by a miss; the
# miss has its own alert.  A probe message that was submitted but never arrived did reach the
# server (``probe.unreachable`` is judged); one whose submission failed says nothing of delivery.
REACHED = {
    ProbeStatus.UNREACHABLE: frozenset({"probe.unreachable"}),
    ProbeStatus.NOT_DELIVERED: frozenset({"probe.unreachable", "outbound.not_delivered"}),
}


def applies(rule_id: str, direction: Direction | None) -> bool:
    """Does ``rule_id`` judge observations of ``direction`` (``None``: a certificate file)?"""
    if rule_id.startswith(CLIENT_ONLY_PREFIX):
        return direction is Direction.TO_EXO
    if rule_id.startswith(SERVED_ONLY_PREFIX):
        return direction is Direction.FROM_EXO
    return not (direction is Direction.TO_EXO and rule_id in SERVED_ONLY)


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
        return has_chain or rule_id.startswith(("probe.", "tls.", CLIENT_ONLY_PREFIX))

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
