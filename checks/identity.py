"""Rules about what the certificate says it is for: host name, EKU, subject CN."""

from __future__ import annotations

from collections.abc import Iterator

from checks.base import Finding, Observation, Policy, RuleInfo, Severity, rule
from checks.certinfo import (
    clip,
    common_names,
    dns_sans,
    extended_key_usages,
    ip_sans,
    is_ip_address,
)
from checks.matching import normalize, rfc6125_match


def names_text(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(clip(n, 80) for n in names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return (shown + more) if names else "none"


@rule(
    "cert.hostname_mismatch",
    Severity.WARNING,
    "Certificate does not cover the endpoint's host name",
    "Peers that verify the host name (Exchange Online delivering to this server with an "
    "outbound connector set to validate the certificate, DANE or MTA-STS senders) fail with "
    "450 4.7.320 SubjectMismatch. Checked per RFC 6125: DNS SANs, or the CN only when there "
    "is no SAN; a wildcard covers exactly one label.",
    "Add the host name to the certificate's subject alternative names, or point `host` at a "
    "name the certificate carries.",
)
def hostname_mismatch(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    leaf = obs.leaf
    if leaf is None or obs.host is None:
        return
    host = normalize(obs.host)
    if is_ip_address(host):
        candidates = ip_sans(leaf)
        covered = host in candidates
    else:
        candidates = dns_sans(leaf) or common_names(leaf)
        covered = any(rfc6125_match(host, name) for name in candidates)
    if not covered:
        yield info.finding(
            f"{obs.where}: the certificate names {names_text(candidates)}, "
            f"not {clip(obs.host, 100)}"
        )


@rule(
    "cert.client_auth_missing",
    Severity.INFO,
    "No TLS Client Authentication EKU",
    "When the on-premises server relays to Exchange Online it presents this certificate as a "
    "client certificate. Public CAs stopped including the clientAuth EKU in 2026; Exchange "
    "Online is not documented to require it, but partner gateways that enforce OpenSSL purpose "
    "checks do. An absent EKU extension means any use and is not reported.",
    "Nothing is needed for Exchange Online. If a peer enforces clientAuth, use a certificate "
    "from a CA or profile that still includes it, or a private client certificate for that peer.",
)
def client_auth_missing(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    leaf = obs.leaf
    if leaf is None:
        return
    ekus = extended_key_usages(leaf)
    if ekus is not None and not {"clientAuth", "anyExtendedKeyUsage"} & set(ekus):
        yield info.finding(f"the leaf's extended key usages are {', '.join(ekus) or 'empty'}")


@rule(
    "cert.no_common_name",
    Severity.INFO,
    "Empty subject common name",
    "New ACME profiles (Let's Encrypt `tlsserver`, `shortlived`) issue certificates without a "
    "subject CN. Matching that relies on the CN and the Exchange `<I>issuer<S>subject` "
    "TlsCertificateName setting then have nothing to match.",
    "Make sure the connector name appears as a DNS SAN, and select the certificate on Exchange "
    "by thumbprint; or request a profile that keeps the CN (Let's Encrypt `classic`).",
)
def no_common_name(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    leaf = obs.leaf
    if leaf is not None and not common_names(leaf):
        yield info.finding(f"the leaf's subject '{clip(leaf.subject.rfc4514_string())}' has no CN")


RULES = (hostname_mismatch, client_auth_missing, no_common_name)
