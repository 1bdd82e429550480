"""What each outcome class means: the text Exchange Online answers, what it means, what fixes it
and how an alert on it opens and resolves.  docs/observed.md is written from this table and the
future ``observed.<class>`` rules carry it as their metadata.

The texts are quoted from /work/shared/reference/exchange-online-signals.md (section 1) and
ms-certificate-connector-relay.md unless a line says otherwise."""

from __future__ import annotations

from dataclasses import dataclass

from monitor.observed.base import Outcome


@dataclass(frozen=True)
class OutcomeClass:
    outcome: Outcome
    codes: tuple[str, ...]  # enhanced status codes that select the class
    text: str  # Exchange Online's reply, as a relay logs it
    meaning: str
    fix: str
    resolves: str  # when an alert on it resolves


CLASSES: tuple[OutcomeClass, ...] = (
    OutcomeClass(
        Outcome.ACCEPTED,
        ("2.x.x",),
        "250 2.6.0 <message-id> [InternalId=..., Hostname=...] Queued mail for delivery",
        "Exchange Online took the message.",
        "Nothing.",
        "Resolves a tenant_attribution, disconnect_after_tls or tls_failed alert at once.",
    ),
    OutcomeClass(
        Outcome.TENANT_ATTRIBUTION,
        ("5.7.64",),
        "550 5.7.64 TenantAttribution; Relay Access Denied ATTR36",
        "The client certificate (or address) matched no inbound connector, so the message was not "
        "attributed to the tenant. It never appears in the tenant's message trace: the relay's "
        "log is the only place it exists.",
        "Present a certificate whose CN or a SAN is covered by the connector's "
        "TlsSenderCertificateName (e.g. *.contoso.com) for a domain accepted in the tenant, "
        "from a public CA, with its chain (smtp_tls_chain_files).",
        "Opens on the first one; an accepted delivery over the same next hop resolves it.",
    ),
    OutcomeClass(
        Outcome.OUT_OF_DATE_THROTTLED,
        ("4.7.230",),
        "450 4.7.230 Connecting Exchange server version is out-of-date; connection to Exchange "
        "Online throttled for n mins/hr.",
        "An out-of-date Exchange server relays over an OnPremises connector: Exchange Online "
        "throttles it (mail still flows, late), then blocks it.",
        "Update the Exchange server (Get-OnPremServerReportInfo lists it); a pause of up to 90 "
        "days a year: New-TenantExemptionInfo -BlockingScenario UnpatchedOnPremServer.",
        "Mail flows during a throttle, so an accepted delivery does not resolve it: it resolves "
        "after a quiet period (24 h) without another 4.7.230.",
    ),
    OutcomeClass(
        Outcome.OUT_OF_DATE_BLOCKED,
        ("5.7.230",),
        "550 5.7.230 Connecting Exchange server version is out-of-date; connection to Exchange "
        "Online blocked for n mins/hr.",
        "As out_of_date_throttled, at its blocking stage: mail from that server is refused.",
        "Update the Exchange server, or pause enforcement (see out_of_date_throttled).",
        "Resolves after a quiet period (24 h) without another 5.7.230.",
    ),
    OutcomeClass(
        Outcome.TENANT_LIMIT,
        ("5.7.233", "5.7.232"),
        "550 5.7.233 Your message can't be sent because your tenant exceeded its daily limit for "
        "sending email to external recipients (tenant external recipient rate limit)",
        "The tenant's external recipient limit over a rolling 24 hours (5.7.232: trial tenants); "
        "relayed mail counts.",
        "Find the sender of the volume; buy licences or send bulk mail another way.",
        "Resolves after a quiet period (24 h) without another one.",
    ),
    OutcomeClass(
        Outcome.UNREGISTERED_DOMAIN,
        ("5.7.750",),
        "550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains",
        "The tenant is blocked from sending as domains it has not registered (relayed mail from "
        "foreign sender domains meets it).",
        "Register the sender domains in the tenant, or stop relaying mail sent as foreign "
        "domains; ask Microsoft support to lift the block.",
        "An accepted delivery of a foreign sender domain resolves it.",
    ),
    OutcomeClass(
        Outcome.DIRECT_SEND,
        ("5.7.68",),
        "550 5.7.68 TenantInboundAttribution; Direct Send not allowed for this organization from "
        "unauthorized sources",
        "The tenant rejects Direct Send and this relay's mail was not attributed to a connector.",
        "Relay through a connector (present the connector's certificate), or a partner connector "
        "for the device.",
        "An accepted delivery over the same next hop resolves it.",
    ),
    OutcomeClass(
        Outcome.AUTH_DISABLED,
        ("5.7.30",),
        "550 5.7.30 Basic authentication is not supported for Client Submission.",
        "SMTP AUTH Basic is off (smtp.office365.com); submission with a password fails.",
        "Move the device or relay to connector relay with a certificate, or to OAuth.",
        "An accepted delivery over the same next hop resolves it.",
    ),
    OutcomeClass(
        Outcome.TRANSIENT,
        ("4.x.x",),
        "451 4.7.500 Server busy. Please try again later from [192.0.2.2]. (AS761)",
        "Any other temporary failure (4.7.500-699 throttling, a timeout, a refused connection); "
        "the relay retries.",
        "Usually nothing; many in a row: check the relay's address reputation and volume.",
        "Resolves with the next accepted delivery.",
    ),
    OutcomeClass(
        Outcome.DISCONNECT_AFTER_TLS,
        (),
        "(no reply: the session is dropped right after STARTTLS or the second EHLO)",
        "Exchange Online did not accept the client certificate and closed the session without "
        "a reply code (seen with certificates it will not attribute; MailCleaner issue 598).",
        "Replace the client certificate (public CA, full chain, a name the connector covers).",
        "An accepted delivery over the same next hop resolves it.",
    ),
    OutcomeClass(
        Outcome.TLS_FAILED,
        (),
        "(the relay's log: SSL_connect error, Cannot start TLS, TLS is required, but ...)",
        "The relay's own TLS handshake failed (protocols, ciphers, its certificate or key).",
        "Read the relay's 'TLS library problem' line; check smtp_tls_* settings.",
        "An accepted delivery over the same next hop resolves it.",
    ),
    OutcomeClass(
        Outcome.OTHER,
        (),
        "(any other reply; its code and text are kept)",
        "A reply relaycert does not classify.",
        "Read the reply kept with it.",
        "An accepted delivery over the same next hop resolves it.",
    ),
)

BY_OUTCOME = {c.outcome: c for c in CLASSES}
