"""What Exchange Online answers when a connector scenario breaks: the relay scenarios that need
the certificate-based connector, and the critical findings that break each direction, with the
error the sender sees."""

from __future__ import annotations

ATTR36 = "550 5.7.64 TenantAttribution; Relay Access Denied ATTR36"
SCENARIOS = (
    (
        "ndr",
        "Relaying NDRs to Internet recipients",
        "Non-delivery reports from on-premises to external senders relay through Microsoft 365.",
    ),
    (
        "foreign",
        "Sending as domains not registered in the tenant",
        "On-premises servers send as a domain the tenant does not own (e.g. a partner's).",
    ),
    (
        "forwarded",
        "Relaying messages forwarded by on-premises rules",
        "Mail forwarded to external recipients keeps an external sender and recipient.",
    ),
)
# Critical findings that break relaying through Exchange Online: the client certificate does
# not attribute the mail to the certificate-based connector, so it is refused with ATTR36.
BREAKING = dict.fromkeys(
    (
        "connector.domain_not_registered",
        "connector.name_not_covered",
        "cert.untrusted",
        "cert.expired",
        "cert.not_yet_valid",
        "cert.weak_signature",
        "tls.starttls_missing",
        "tls.handshake_failed",
        "tls.protocol_outdated",
        "outbound.no_client_certificate",
        "outbound.no_tls",
    ),
    ATTR36,
)
# Critical findings that break Exchange Online delivering *to* the on-prem listener over TLS
# (an outbound connector that validates the certificate), with what Exchange Online reports.
# Sources: ../shared/reference/m365-connector-facts.md (R18 UntrustedRoot; R23 SubjectMismatch).
DELIVERY_FAILED = "450 4.4.317 Cannot connect to remote server"
UNTRUSTED = f"{DELIVERY_FAILED} [Message=UntrustedRoot]"
DELIVERY_BREAKING = {
    "cert.untrusted": UNTRUSTED,
    "cert.expired": f"{DELIVERY_FAILED} (certificate validation fails: expired)",
    "cert.not_yet_valid": f"{DELIVERY_FAILED} (certificate validation fails: not yet valid)",
    "cert.weak_signature": f"{DELIVERY_FAILED} (certificate validation fails: SHA-1 signature)",
    "tls.starttls_missing": f"{DELIVERY_FAILED} (TLS required by the connector, not offered)",
    "tls.handshake_failed": f"{DELIVERY_FAILED} (TLS negotiation fails)",
    "tls.protocol_outdated": f"{DELIVERY_FAILED} (TLS 1.2 or later required)",
    "delivery.tls_domain_mismatch": "450 4.7.320 Certificate validation failed "
    "[Message=SubjectMismatch]",
    "dane.tlsa_mismatch": f"{DELIVERY_FAILED} (DANE: no TLSA record matches)",
    "dane.tlsa_unsigned": f"{DELIVERY_FAILED} (DANE Mandatory: no validated TLSA record)",
    "dane.tlsa_missing": f"{DELIVERY_FAILED} (DANE Mandatory: no TLSA record)",
    "mtasts.mx_not_covered": f"{DELIVERY_FAILED} (MTA-STS enforce: MX host not in the policy)",
    "cert.hostname_mismatch": f"{DELIVERY_FAILED} (the certificate does not name the host)",
}
DELIVERY = (
    "delivery",
    "Delivery from Exchange Online to on-premises",
    "Exchange Online delivers to the on-premises listener over TLS, checking its certificate "
    "when the outbound connector validates it.",
)
