"""The built-in rules, in one literal mapping, and the function that runs them all."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from checks import connector, crypto, drift, identity, session, trust, validity
from checks.base import Finding, Observation, Policy, ProbeStatus, Rule


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
]
BUILTIN_RULES: Mapping[str, Rule] = _index(_BUILTIN)

# Rules that judge the configuration, not the certificate: they run even when no chain was seen.
CONFIG_RULES = frozenset({"connector.domain_not_registered", "connector.host_specific_name"})


def evaluated(obs: Observation, rules: Mapping[str, Rule] = BUILTIN_RULES) -> frozenset[str]:
    """The ids of the rules :func:`evaluate` runs for ``obs``.  A rule not run says nothing:
    a failed probe must not resolve the alerts of certificate rules."""
    has_chain = bool(obs.chain) and obs.status in (ProbeStatus.OK, ProbeStatus.FILE)
    return frozenset(
        rule_id
        for rule_id in rules
        if has_chain or rule_id in CONFIG_RULES or rule_id.startswith(("probe.", "tls."))
    )


def evaluate(
    obs: Observation, policy: Policy, rules: Mapping[str, Rule] = BUILTIN_RULES
) -> list[Finding]:
    """Run every rule on ``obs``; certificate rules only when a chain was captured."""
    run = evaluated(obs, rules)
    findings: list[Finding] = []
    for rule_id, r in rules.items():
        if rule_id in run:
            findings.extend(r.evaluate(obs, policy))
    return findings
