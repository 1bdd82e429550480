"""Rules about the on-prem server as a TLS *client* relaying to Exchange Online: what the capture
listener saw when the outbound check's probe message arrived (or that it never did).

Exchange Online attributes relayed mail to a certificate-based inbound connector by the
certificate the on-prem server presents as a client.  No certificate, or no TLS at all, and the
mail is refused with ``550 5.7.64 TenantAttribution; Relay Access Denied ATTR36``, however good
the certificate its own listener serves.
"""

from __future__ import annotations

from collections.abc import Iterator

from checks.base import Finding, Observation, Policy, ProbeStatus, RuleInfo, Severity, rule
from checks.certinfo import fingerprint


@rule(
    "outbound.no_client_certificate",
    Severity.CRITICAL,
    "No client certificate presented when relaying",
    "The on-prem server used TLS but presented no certificate when it sent mail, although the "
    "capture listener asked for one. Exchange Online then cannot attribute relayed mail to the "
    "certificate-based connector: NDRs, mail from foreign domains and forwarded mail are "
    "refused with 550 5.7.64 ATTR36, while the certificate the server's listener serves may be "
    "perfect.",
    "Postfix: set `smtp_tls_chain_files` (or `smtp_tls_cert_file`/`smtp_tls_key_file`) for the "
    "`smtp` transport that delivers to Exchange Online. Exchange Server: set the Send "
    "connector's `TlsCertificateName` to `<I>issuer<S>subject` of the current certificate "
    "(after every renewal that changes either) and restart the transport service.",
)
def no_client_certificate(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    if obs.status is ProbeStatus.NO_CLIENT_CERT:
        yield info.finding(
            f"{obs.where}: relayed over {obs.tls_version or 'TLS'} without a client certificate; "
            "Exchange Online would refuse relayed mail with 550 5.7.64 ATTR36"
        )


@rule(
    "outbound.no_tls",
    Severity.CRITICAL,
    "Relayed without TLS",
    "The on-prem server delivered the probe message in plain text. Exchange Online accepts "
    "relay on a certificate-based connector only over TLS with a client certificate.",
    "Enable TLS toward Exchange Online (Postfix `smtp_tls_security_level = encrypt` or at least "
    "`may` on that transport; Exchange: `RequireTLS` on the Send connector).",
)
def no_tls(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    if obs.status is ProbeStatus.NO_TLS:
        yield info.finding(f"{obs.where}: relayed the probe message without STARTTLS")


@rule(
    "outbound.not_delivered",
    Severity.UNKNOWN,
    "Outbound probe message never arrived",
    "relaycert submitted a probe message through the on-prem server, but it did not reach the "
    "capture listener in time. Nothing is known about the client certificate; repeated misses "
    "(`[capture] misses_critical`) become critical, as the route, the queue or the relay "
    "itself is broken.",
    "Check the on-prem server's queue and log for the probe message (its recipient starts with "
    "`rc-`), the route for the probe domain (Postfix `transport_maps`, Exchange Send "
    "connector) and the firewall between the server and the monitor.",
)
def not_delivered(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    if obs.status is ProbeStatus.NOT_DELIVERED:
        critical = obs.misses >= policy.misses_critical
        yield info.finding(
            f"{obs.where}: the probe message did not arrive ({obs.error or 'no session'}); "
            f"{obs.misses} consecutive miss(es)",
            Severity.CRITICAL if critical else None,
        )


@rule(
    "outbound.differs_from_served",
    Severity.INFO,
    "Client certificate differs from the served one",
    "The certificate the server presents when it relays is not the one its listener serves. "
    "That is allowed (the two are configured separately), but a renewal then has to update "
    "both places, and the served certificate says nothing about relay.",
    "Nothing, if intended. Otherwise point the client setting (Postfix `smtp_tls_chain_files`, "
    "Exchange Send connector `TlsCertificateName`) at the same certificate as the listener.",
)
def differs_from_served(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    leaf = obs.leaf
    if leaf is None or not obs.served:
        return
    mine = fingerprint(leaf)
    if mine not in obs.served:
        yield info.finding(
            f"{obs.where}: presents {mine[:16]}... as client; the listener serves "
            f"{', '.join(s[:16] + '...' for s in sorted(set(obs.served)))}"
        )


RULES = (no_client_certificate, no_tls, not_delivered, differs_from_served)
