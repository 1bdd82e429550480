"""Rules about validity periods: expired, not yet valid, expiring relative to the lifetime."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from checks.base import Finding, Observation, Policy, RuleInfo, Severity, rule
from checks.certinfo import days_text as _days
from checks.certinfo import is_self_signed, label, lifetime


@rule(
    "cert.expired",
    Severity.CRITICAL,
    "Certificate expired",
    "An expired certificate in the presented chain fails validation, so Exchange Online rejects "
    "the relay (550 5.7.64 TenantAttribution or 450 4.4.317).",
    "Renew the certificate (or the intermediate), install it with its chain and reload the "
    "server; on Exchange also update the send connector's TlsCertificateName.",
)
def expired(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    for index, cert in enumerate(obs.chain):
        if cert.not_valid_after_utc <= policy.now:
            ago = _days(policy.now - cert.not_valid_after_utc)
            yield info.finding(
                f"{label(cert, index)} expired {ago} ago "
                f"(not after {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC)"
            )


@rule(
    "cert.not_yet_valid",
    Severity.CRITICAL,
    "Certificate not yet valid",
    "A certificate whose validity starts in the future fails validation everywhere; it usually "
    "means a wrong clock on the issuing or the serving machine.",
    "Check the server clock (NTP) and the certificate's notBefore; install a currently valid "
    "certificate.",
)
def not_yet_valid(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    for index, cert in enumerate(obs.chain):
        if cert.not_valid_before_utc > policy.now:
            yield info.finding(
                f"{label(cert, index)} is not valid before "
                f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
            )


@rule(
    "cert.expiring",
    Severity.WARNING,
    "Certificate expiring soon",
    "Mail relay through the connector stops when the certificate expires. Thresholds are "
    "relative to the lifetime: warning below min(30 days, 1/3 of it), critical below "
    "min(7 days, 1/10 of it), so 47-day and 6-day certificates are judged fairly.",
    "Renew now (or check why automatic renewal has not happened yet); thresholds are set in "
    "`[expiry]`.",
)
def expiring(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    for index, cert in enumerate(obs.chain):
        if index > 0 and is_self_signed(cert):
            continue  # a root sent along is ignored by the peer, its expiry does not matter here
        left = cert.not_valid_after_utc - policy.now
        if left <= timedelta(0) or cert.not_valid_before_utc > policy.now:
            continue  # cert.expired / cert.not_yet_valid report these
        span = lifetime(cert)
        severity = None
        if left < policy.expiry.critical_at(span):
            severity = Severity.CRITICAL
        elif left < policy.expiry.warning_at(span):
            severity = Severity.WARNING
        if severity is not None:
            yield info.finding(
                f"{label(cert, index)} expires in {_days(left)} "
                f"(on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; lifetime {_days(span)})",
                severity,
            )


RULES = (expired, not_yet_valid, expiring)
