"""Rules about revocation: the leaf's CRL (fetched and verified by the probe, in both
directions and for a freshly issued certificate in the renewal gate) lists it, or could not be
read.  Let's Encrypt ended OCSP; certificates carry CRL distribution points, and CAs revoke at
short notice (DigiCert revoked 83 000 with 24 hours' notice in 2024)."""

from __future__ import annotations

from collections.abc import Iterator

from checks.base import Finding, Observation, Policy, RuleInfo, Severity, rule
from checks.certinfo import clip


@rule(
    "cert.revoked",
    Severity.CRITICAL,
    "Certificate revoked by its CA",
    "A revoked certificate fails validation wherever revocation is checked, and a CA that "
    "revokes (a mis-issuance, a key compromise) expects it replaced within days or hours. "
    "Exchange Online and other MTAs that check CRLs refuse it (450 4.4.317 or 550 5.7.64).",
    "Replace it now: renew (relaycert renews at once when it manages the certificate), deploy "
    "and reload the server; with keyCompromise, renew with a new private key.",
)
def revoked(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    evidence = obs.revocation
    if evidence is None or evidence.status != "revoked":
        return
    when = f" on {evidence.revoked_at:%Y-%m-%d %H:%M} UTC" if evidence.revoked_at else ""
    why = f" (reason: {clip(evidence.reason, 60)})" if evidence.reason else ""
    yield info.finding(
        f"{obs.where}: the leaf was revoked{when}{why}; listed in the CRL "
        f"{clip(evidence.url or '-', 200)}"
    )


@rule(
    "cert.revocation_unknown",
    Severity.WARNING,
    "Revocation status unknown",
    "The leaf names a CRL that could not be fetched or verified (the CA's server unreachable, "
    "a wrong signature, an expired CRL), so a revocation would go unnoticed. It is a warning "
    "once this lasts longer than `[revocation] grace`, information before.",
    "Check that the monitoring host reaches the CRL's URL (`[revocation] proxy` if it needs "
    "one) and that the server sends the issuing intermediate (the CRL is verified with it).",
)
def revocation_unknown(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    evidence = obs.revocation
    if evidence is None or evidence.status != "unknown":
        return
    since = evidence.unknown_since or policy.now
    late = policy.now - since >= policy.revocation_grace
    yield info.finding(
        f"{obs.where}: the CRL {clip(evidence.url or '-', 200)} could not be checked: "
        f"{clip(evidence.error or 'unknown error', 300)} (since {since:%Y-%m-%d %H:%M} UTC)",
        Severity.WARNING if late else Severity.INFO,
    )


RULES = (revoked, revocation_unknown)
