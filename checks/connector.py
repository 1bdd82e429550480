"""Rules about the Exchange Online connector: does the certificate satisfy it, is it registered."""

from __future__ import annotations

from collections.abc import Iterator

from checks.base import Finding, Observation, Policy, RuleInfo, Severity, rule
from checks.certinfo import all_names, clip
from checks.identity import names_text
from checks.matching import base_domain, connector_match, is_wildcard, registered_domain


@rule(
    "connector.name_not_covered",
    Severity.CRITICAL,
    "Certificate does not match the connector's TlsSenderCertificateName",
    "Exchange Online attributes relayed mail to the certificate-based inbound connector only when "
    "a CN or DNS SAN of the presented certificate matches TlsSenderCertificateName; otherwise "
    "NDRs, foreign-domain senders and forwarded mail are rejected with 550 5.7.64 ATTR36. "
    "`*.contoso.com` matches contoso.com and every subdomain; a wildcard certificate "
    "`*.contoso.com` matches only the connector value `*.contoso.com`.",
    "Issue the certificate with a name the connector covers, or change the connector "
    "(`Set-InboundConnector -TlsSenderCertificateName *.contoso.com`).",
)
def name_not_covered(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    leaf, connector = obs.leaf, policy.connector
    if leaf is None or connector is None:
        return
    names = all_names(leaf)
    if not any(connector_match(connector.tls_sender_certificate_name, n) for n in names):
        yield info.finding(
            f"connector '{clip(connector.name, 80)}' expects "
            f"'{connector.tls_sender_certificate_name}', the leaf names {names_text(names)}"
        )


@rule(
    "connector.domain_not_registered",
    Severity.CRITICAL,
    "Connector domain is not an accepted domain",
    "The certificate domain on a certificate-based connector must be an accepted (registered) "
    "domain of the tenant; Microsoft flags anything else as an unhealthy connector that may "
    "stop working (MC1226222) and relay is refused with 550 5.7.64.",
    "Add the domain as an accepted domain of the tenant, or use a connector value under one "
    "(list them in `[tenant] accepted_domains`).",
)
def domain_not_registered(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    connector = policy.connector
    if connector is None:
        return
    domain = base_domain(connector.tls_sender_certificate_name)
    if registered_domain(domain, policy.accepted_domains) is None:
        yield info.finding(
            f"connector '{clip(connector.name, 80)}' uses '{domain}', which is not an accepted "
            f"domain nor under one (accepted: {', '.join(policy.accepted_domains) or 'none'})"
        )


@rule(
    "connector.host_specific_name",
    Severity.WARNING,
    "Connector names a host instead of the accepted domain",
    "Hybrid Configuration Wizard connectors often carry a host name such as mail.contoso.com; "
    "Microsoft asks to change them to *.contoso.com because such names may not be registered "
    "domains, and a renewal with other host names then breaks relay.",
    "Set the connector to the accepted domain with a wildcard: "
    "`Set-InboundConnector -TlsSenderCertificateName *.contoso.com`.",
)
def host_specific_name(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    connector = policy.connector
    if connector is None or is_wildcard(connector.tls_sender_certificate_name):
        return
    domain = base_domain(connector.tls_sender_certificate_name)
    accepted = registered_domain(domain, policy.accepted_domains)
    if accepted is not None and accepted != domain:
        yield info.finding(
            f"connector '{clip(connector.name, 80)}' names the host '{domain}'; "
            f"use '*.{accepted}' (the accepted domain)"
        )


@rule(
    "connector.subdomain_not_accepted",
    Severity.WARNING,
    "Connector domain is only a subdomain of an accepted domain",
    "Microsoft's guidance is that the certificate domain of a certificate-based connector must "
    "itself be an accepted domain; a subdomain that was not added explicitly does not count. "
    "Whether an accepted domain's `MatchSubDomains` setting changes that is undocumented, so "
    "this is a warning, not a verdict.",
    "Add the subdomain as an accepted domain of the tenant (`New-AcceptedDomain`), then list "
    "it in `[tenant] accepted_domains`; or use the accepted domain itself in the connector.",
)
def subdomain_not_accepted(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    connector = policy.connector
    if connector is None or not is_wildcard(connector.tls_sender_certificate_name):
        return  # a host name under an accepted domain is connector.host_specific_name
    domain = base_domain(connector.tls_sender_certificate_name)
    accepted = registered_domain(domain, policy.accepted_domains)
    if accepted is not None and accepted != domain:
        yield info.finding(
            f"connector '{clip(connector.name, 80)}' uses '{domain}', which is not itself an "
            f"accepted domain (it lies under '{accepted}'); add '{domain}' as an accepted domain"
        )


RULES = (name_not_covered, domain_not_registered, host_specific_name, subdomain_not_accepted)
