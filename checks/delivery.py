"""The delivery contract: what Exchange Online checks when it delivers *to* an endpoint.

The served certificate (the endpoint's listener) is what Exchange Online meets when it delivers
through its outbound connector to the organization; that connector's ``TlsSettings`` decides
what is checked (docs/rules.md, "The delivery contract"):

- ``EncryptionOnly`` (or TlsSettings not set): TLS only; an untrusted, expired or not yet valid
  certificate still delivers.  Those findings stay, as warnings that say delivery works today
  and why (a validating sender, or a stricter setting, would fail).
- ``CertificateValidation``: a chain to a trusted root, valid now.  The rules as they are.
- ``DomainValidation``: also a certificate name matching ``TlsDomain``
  (``delivery.tls_domain_mismatch``; Exchange Online answers 450 4.7.320 SubjectMismatch).

With no outbound connector known the certificate is judged as under CertificateValidation, and
the verdict says so (:data:`checks.base.UNKNOWN_DELIVERY`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from checks.base import (
    DeliveryContract,
    Finding,
    MtaStsEvidence,
    Observation,
    Policy,
    RuleInfo,
    Severity,
    rule,
)
from checks.certinfo import clip, common_names, dns_sans
from checks.identity import names_text
from checks.matching import normalize, rfc6125_match

# Findings about what a validating client refuses; under a contract that validates nothing they
# describe a risk, not a failure of delivery.
NOT_VALIDATED = frozenset({"cert.untrusted", "cert.expired", "cert.not_yet_valid"})


def tls_domain_match(tls_domain: str, cert_name: str) -> bool:
    """Does the certificate DNS name ``cert_name`` satisfy the outbound connector's
    ``TlsDomain``?

    ``mail.contoso.com``: the name as a TLS client checks it (RFC 6125: that exact name, or a
    wildcard for its parent).  ``*.contoso.com`` (Microsoft: "all subdomains of contoso.com"):
    a name under contoso.com at any depth, or a wildcard certificate name under it.  The bare
    ``contoso.com`` is not a subdomain, so it does not match here (see :func:`apex_only`).
    """
    pattern, name = normalize(tls_domain), normalize(cert_name)
    if not pattern or not name:
        return False
    if not pattern.startswith("*."):
        return rfc6125_match(pattern, name)
    if name == pattern:
        return True
    base = pattern[2:]
    covered = name[2:] if name.startswith("*.") else name
    return covered.endswith("." + base) or (name.startswith("*.") and covered == base)


def apex_only(tls_domain: str, names: Iterable[str]) -> bool:
    """A wildcard ``TlsDomain`` that only the bare parent domain among ``names`` matches:
    Microsoft's documentation leaves open whether that delivers."""
    pattern = normalize(tls_domain)
    return pattern.startswith("*.") and any(normalize(n) == pattern[2:] for n in names)


@rule(
    "delivery.tls_domain_mismatch",
    Severity.CRITICAL,
    "Certificate does not match the outbound connector's TlsDomain",
    "Exchange Online delivers to this server through an outbound connector set to "
    "TlsSettings DomainValidation: it accepts the certificate only when a name in it matches "
    "the connector's TlsDomain, and otherwise defers every message with 450 4.7.320 "
    "Certificate validation failed [Message=SubjectMismatch] (4.4.317 after retries). A "
    "certificate can cover the relay connector (`*.contoso.com`) and still fail a delivery "
    "TlsDomain such as `mail.contoso.com` when it names only other hosts. A TlsDomain "
    "`*.contoso.com` means every subdomain of contoso.com; where only the bare contoso.com, or "
    "only the subject CN while the certificate has DNS names, matches, Microsoft's "
    "documentation does not say whether delivery works, so that is a warning.",
    "Put a name matching the TlsDomain in the certificate's subject alternative names (and "
    "renew it with that name), or correct the connector: `Set-OutboundConnector <name> "
    "-TlsDomain <name the certificate carries>`.",
)
def tls_domain_mismatch(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    contract, leaf = policy.delivery, obs.leaf
    if contract is None or contract.tls_settings != "DomainValidation" or leaf is None:
        return
    if not contract.tls_domain:
        return  # the configuration refuses DomainValidation without a TlsDomain
    sans, cns = dns_sans(leaf), common_names(leaf)
    names = sans or cns
    if any(tls_domain_match(contract.tls_domain, name) for name in names):
        return
    where = f"{obs.where}: {contract.describe()}"
    if apex_only(contract.tls_domain, names):
        yield info.finding(
            f"{where}: the certificate names only the parent domain "
            f"{clip(contract.tls_domain[2:], 100)}, which the documentation does not say a "
            "wildcard TlsDomain covers; add a subdomain name to be sure",
            Severity.WARNING,
        )
        return
    if sans and any(tls_domain_match(contract.tls_domain, cn) for cn in cns):
        yield info.finding(
            f"{where}: only the subject CN matches, not the DNS names "
            f"({names_text(sans)}); whether Exchange Online accepts a CN-only match is not "
            "documented: add the name to the subject alternative names",
            Severity.WARNING,
        )
        return
    yield info.finding(
        f"{where}: the certificate names {names_text(names)}, none of which matches; delivery "
        "fails with 450 4.7.320 Certificate validation failed [Message=SubjectMismatch]"
    )


@rule(
    "delivery.smart_host_unmonitored",
    Severity.WARNING,
    "The outbound connector delivers to a host no endpoint probes",
    "Exchange Online delivers through the outbound connector to each of its smart hosts, or, "
    "with UseMXRecord, to the MX hosts of its recipient domains (and spreads mail across "
    "them). A host there that no endpoint probes is a delivery path whose "
    "certificate relaycert does not measure: when it breaks, part of the mail is deferred "
    "and nothing here says so.",
    "Add an `[[endpoints]]` entry for each host named in the finding (port 25: Exchange "
    "Online delivers on port 25), or remove it from the connector's SmartHosts (or the MX).",
)
def smart_host_unmonitored(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    contract = policy.delivery
    if contract is None or not contract.unmonitored:
        return
    hosts = ", ".join(clip(h, 100) for h in contract.unmonitored[:8])
    more = f" and {len(contract.unmonitored) - 8} more" if len(contract.unmonitored) > 8 else ""
    yield info.finding(
        f"{obs.where}: outbound connector '{clip(contract.connector, 100)}' also delivers to "
        f"{hosts}{more}, which no endpoint probes: delivery there is not measured"
    )


def under_contract(
    findings: list[Finding],
    contract: DeliveryContract | None,
    enforced: Sequence[MtaStsEvidence] = (),
) -> list[Finding]:
    """The served direction's findings as ``contract`` makes them: under a connector that
    validates nothing, an untrusted, expired or not yet valid certificate still delivers, so
    those are warnings that say so.  Under an MTA-STS policy in mode enforce (``enforced``)
    Exchange Online validates whatever the connector says: nothing is lowered, and a
    certificate that does not cover the host name is critical."""
    if enforced:
        domains = ", ".join(clip(p.domain, 100) for p in enforced[:4])
        return [
            Finding(
                f.rule,
                Severity.CRITICAL,
                f"{f.message} (critical: the MTA-STS policy of {domains} is in mode enforce, "
                "so Exchange Online checks the name and does not deliver to this host)",
            )
            if f.rule == "cert.hostname_mismatch"
            else f
            for f in findings
        ]
    if contract is None or contract.validates:
        return findings
    adjusted = []
    for finding in findings:
        if finding.rule in NOT_VALIDATED and finding.severity.rank > Severity.WARNING.rank:
            finding = Finding(
                finding.rule,
                Severity.WARNING,
                f"{finding.message} (delivery works today: {contract.describe()} does not "
                "validate the certificate; a sender that validates, DANE or MTA-STS, or a "
                "stricter TlsSettings would fail)",
            )
        adjusted.append(finding)
    return adjusted


RULES = (tls_domain_mismatch, smart_host_unmonitored)
