"""Rules about the SMTP/TLS session itself: could the probe reach TLS, and which version."""

from __future__ import annotations

from collections.abc import Iterator

from checks.base import Finding, Observation, Policy, ProbeStatus, RuleInfo, Severity, rule
from checks.certinfo import subject_text

OUTDATED_VERSIONS = frozenset({"SSLv2", "SSLv3", "TLSv1", "TLSv1.1"})


@rule(
    "probe.unreachable",
    Severity.UNKNOWN,
    "Endpoint could not be probed",
    "The name did not resolve, the connection failed or timed out, or the server did not "
    "complete the SMTP greeting or EHLO. Nothing is known about its certificate.",
    "Check that the host and port are right, that the server runs and that firewalls let the "
    "monitor in; raise `timeout` for slow servers.",
)
def unreachable(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    if obs.status is ProbeStatus.UNREACHABLE:
        yield info.finding(f"{obs.where}: {obs.failed_step or 'probe'} failed: {obs.error}")


@rule(
    "tls.starttls_missing",
    Severity.CRITICAL,
    "STARTTLS not offered or refused",
    "Exchange Online accepts relay on a certificate-based connector only over TLS. A server that "
    "does not offer STARTTLS (or refuses it, e.g. 454) cannot present its certificate.",
    "Enable TLS on the receive side (Postfix `smtpd_tls_security_level = may` with "
    "`smtpd_tls_chain_files`; Exchange: a certificate enabled for SMTP on the receive connector).",
)
def starttls_missing(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    if obs.status is ProbeStatus.STARTTLS_MISSING:
        yield info.finding(f"{obs.where}: the server's EHLO reply does not offer STARTTLS")
    elif obs.status is ProbeStatus.STARTTLS_REFUSED:
        yield info.finding(f"{obs.where}: STARTTLS was refused: {obs.error}")


@rule(
    "tls.handshake_failed",
    Severity.CRITICAL,
    "TLS handshake failed",
    "The server offered TLS but the handshake failed (alert, no shared protocol or cipher, no "
    "certificate configured), so Exchange Online could not establish TLS either.",
    "Read the server's TLS log for the alert; check that a certificate and key are configured "
    "and that TLS 1.2 with an ECDHE-RSA-AES-GCM suite is enabled.",
)
def handshake_failed(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    if obs.status is not ProbeStatus.HANDSHAKE_FAILED:
        return
    text = f"{obs.where}: TLS handshake failed: {obs.error}"
    leaf = obs.leaf
    if leaf is not None:  # read from the handshake before the server aborted it
        text += (
            f"; before that the server presented '{subject_text(leaf)}' (valid until "
            f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, {len(obs.chain)} certificate(s))"
        )
    yield info.finding(text)


@rule(
    "tls.protocol_outdated",
    Severity.CRITICAL,
    "TLS version below 1.2",
    "Exchange Online refuses TLS 1.0 and 1.1 on mail flow since January 2021.",
    "Enable TLS 1.2 (and 1.3) on the server (Postfix `smtpd_tls_protocols = >=TLSv1.2`; on "
    "Windows enable TLS 1.2 in SChannel and .NET).",
)
def protocol_outdated(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    if obs.tls_version in OUTDATED_VERSIONS:
        yield info.finding(
            f"{obs.where}: negotiated {obs.tls_version}; Exchange Online requires TLS 1.2 or later"
        )


@rule(
    "tls.legacy_accepted",
    Severity.INFO,
    "Server still accepts TLS 1.0 or 1.1",
    "The server negotiated TLS 1.2 or later with relaycert, but still accepts an older version "
    "when a client offers nothing newer. Exchange Online itself needs 1.2 or later, so mail "
    "flow is not affected; old versions are a hygiene and audit finding. The daemon checks at "
    "most once per `[probe] legacy_tls_every`; `relaycert scan` only with `--legacy-tls`.",
    "Disable TLS 1.0 and 1.1 on the server (Postfix `smtpd_tls_protocols = >=TLSv1.2` and "
    "`smtpd_tls_mandatory_protocols = >=TLSv1.2`; Windows: disable them in SChannel).",
)
def legacy_accepted(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    if obs.legacy_versions and obs.tls_version not in OUTDATED_VERSIONS:
        yield info.finding(
            f"{obs.where}: also accepts {', '.join(obs.legacy_versions)} "
            f"(negotiated {obs.tls_version} with a current client)"
        )


RULES = (unreachable, starttls_missing, handshake_failed, protocol_outdated, legacy_accepted)
