"""MTA-STS (RFC 8461) on the delivery direction: Exchange Online honours a recipient domain's
policy when it delivers to the domain's MX hosts (an outbound connector with UseMXRecord).

In mode ``enforce`` a sender delivers only to an MX host that one of the policy's ``mx``
patterns names and whose certificate is valid for that name (a trusted chain, in date, the
name covered); in ``testing`` it delivers anyway and only reports.  A wildcard pattern
``*.contoso.com`` covers exactly one label (RFC 8461 section 4.1).
"""

from __future__ import annotations

from collections.abc import Iterator

from checks.base import Finding, MtaStsEvidence, Observation, Policy, RuleInfo, Severity, rule
from checks.certinfo import clip
from checks.matching import normalize


def mx_match(pattern: str, host: str) -> bool:
    """Does the policy's ``mx`` pattern name ``host`` (RFC 8461 section 4.1)?"""
    pattern, host = normalize(pattern), normalize(host)
    if pattern.startswith("*."):
        first, _, rest = host.partition(".")
        return bool(first) and rest == pattern[2:]
    return pattern == host


def enforced(obs: Observation) -> list[MtaStsEvidence]:
    """The policies in mode ``enforce`` that apply to this host."""
    return [p for p in obs.mtasts if p.present and p.error is None and p.mode == "enforce"]


@rule(
    "mtasts.mx_not_covered",
    Severity.CRITICAL,
    "MX host not covered by the domain's MTA-STS policy",
    "The recipient domain publishes an MTA-STS policy, and Exchange Online (like every MTA-STS "
    "sender) honours it when it delivers to the domain's MX hosts: in mode enforce it delivers "
    "only to an MX host that one of the policy's mx patterns names (a wildcard covers one "
    "label), so mail to this host stops. In mode testing it still delivers and only reports "
    "(a warning). The certificate must also be valid for the host name under enforce: "
    "cert.hostname_mismatch is critical there.",
    "Add the host to the policy's `mx:` lines (or a wildcard for its parent), publish the "
    "policy with a new `id` in the `_mta-sts` TXT record, or point the MX at a host the policy "
    "names.",
)
def mx_not_covered(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    if obs.host is None:
        return
    for found in obs.mtasts:
        if not found.present or found.error is not None or found.mode not in ("enforce", "testing"):
            continue
        if any(mx_match(pattern, obs.host) for pattern in found.mx):
            continue
        patterns = ", ".join(clip(p, 80) for p in found.mx[:6]) or "none"
        severity = Severity.CRITICAL if found.mode == "enforce" else Severity.WARNING
        effect = (
            "Exchange Online does not deliver to it"
            if found.mode == "enforce"
            else "senders still deliver (mode testing) and report a failure"
        )
        yield info.finding(
            f"{obs.where}: {clip(obs.host, 100)} is an MX host of {clip(found.domain, 100)}, "
            f"whose MTA-STS policy (mode {found.mode}) names {patterns}: {effect}",
            severity,
        )


@rule(
    "mtasts.policy_unreachable",
    Severity.WARNING,
    "The domain's MTA-STS policy cannot be fetched",
    "The recipient domain announces an MTA-STS policy (its `_mta-sts` TXT record), but the "
    "policy at https://mta-sts.<domain>/.well-known/mta-sts.txt could not be read (no "
    "answer, a certificate the trust anchors reject, not 200 text/plain, malformed, larger "
    "than 64 KiB). Senders then use the policy they cached; one that has none delivers as if "
    "there were no policy, so what protects the domain is not known.",
    "Serve the policy over HTTPS with a publicly trusted certificate for mta-sts.<domain>, as "
    "text/plain, without redirects, or remove the `_mta-sts` record.",
)
def policy_unreachable(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    for found in obs.mtasts:
        if found.error is not None:
            yield info.finding(
                f"{obs.where}: the MTA-STS policy of {clip(found.domain, 100)}: {found.error}"
            )


RULES = (mx_not_covered, policy_unreachable)
