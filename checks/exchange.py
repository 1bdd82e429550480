"""The Exchange Server side of relaying: does the Send connector toward Exchange Online name,
with ``TlsCertificateName`` (``<I>issuer<S>subject``), exactly one installed certificate that is
valid, enabled for SMTP and satisfies the connector?  Exchange picks the client certificate by
that string; after a renewal that changed the issuer or the subject it finds none, sends no
certificate, and Exchange Online refuses relayed mail with 550 5.7.64 ATTR36.

Pure functions of the exports (``Get-SendConnector`` and ``Get-ExchangeCertificate`` as
``ConvertTo-Json``), in the shapes Exchange writes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from checks.base import Connector, Finding, RuleInfo, Severity
from checks.matching import base_domain, connector_match, registered_domain

# Documented like every rule (docs/rules.md); judged by :func:`judge` from Exchange exports, not
# from a probe, so they are not in the probe registry.
RULES = (
    RuleInfo(
        "exchange.send_certificate_missing",
        Severity.CRITICAL,
        "Send connector names no installed certificate",
        "Exchange Server picks the client certificate it presents to Exchange Online by the "
        "Send connector's TlsCertificateName (<I>issuer<S>subject). When no installed "
        "certificate has exactly that issuer and subject (typically after a renewal by a new "
        "intermediate), Exchange presents none and relayed mail fails with 550 5.7.64 ATTR36.",
        "Set-SendConnector <name> -TlsCertificateName '<I>issuer<S>subject' of the current "
        "certificate (the finding names it when one with the same subject is installed).",
    ),
    RuleInfo(
        "exchange.send_certificate_ambiguous",
        Severity.WARNING,
        "Send connector's certificate name matches several certificates",
        "Several installed certificates have the issuer and subject TlsCertificateName names; "
        "which one Exchange presents is not defined, and an expired one may win.",
        "Remove the certificates that are no longer meant to be used (Remove-ExchangeCertificate).",
    ),
    RuleInfo(
        "exchange.send_certificate_unusable",
        Severity.CRITICAL,
        "Send connector's certificate is expired or not enabled for SMTP",
        "The certificate TlsCertificateName names exists but Exchange will not use it: it "
        "expired, or it is not enabled for the SMTP service.",
        "Renew it, or Enable-ExchangeCertificate -Thumbprint <t> -Services SMTP.",
    ),
)

EXO_SMART_HOST = re.compile(r"\.mail\.protection\.outlook\.(com|de|cn)$", re.I)
_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


@dataclass(frozen=True)
class ExchangeCertificate:
    thumbprint: str
    subject: str
    issuer: str
    not_after: datetime | None
    smtp: bool
    names: tuple[str, ...]


@dataclass(frozen=True)
class SendConnector:
    name: str
    enabled: bool
    smart_hosts: tuple[str, ...]
    tls_certificate_name: str | None


def dn_parts(dn: str) -> tuple[tuple[str, ...], ...]:
    """A DN as RDNs of sorted ``TYPE=value`` parts, case-folded, spaces around separators
    dropped, escapes (``\\,``, ``\\+``) respected: Exchange's ``CN=a, O=b`` and
    ``CN=a,O=b`` compare equal; so do multi-valued RDNs written in either order."""
    rdns: list[tuple[str, ...]] = []
    current: list[str] = []
    part, escaped = "", False
    for char in dn:
        if escaped:
            part += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",;+":
            current.append(part.strip().casefold())
            part = ""
            if char != "+":
                rdns.append(tuple(sorted(current)))
                current = []
        else:
            part += char
    if part.strip():
        current.append(part.strip().casefold())
    if current:
        rdns.append(tuple(sorted(current)))
    return tuple(rdns)


def split_tls_name(value: Any) -> tuple[str, str] | None:
    """(issuer, subject) of a ``TlsCertificateName``: the ``<I>issuer<S>subject`` string, or
    the object Exchange Management Shell serialises (``CertificateIssuer``,
    ``CertificateSubject``)."""
    if isinstance(value, dict):
        issuer, subject = value.get("CertificateIssuer"), value.get("CertificateSubject")
        return (str(issuer), str(subject)) if issuer and subject else None
    if isinstance(value, str) and value.startswith("<I>") and "<S>" in value:
        issuer, _, subject = value[3:].partition("<S>")
        return issuer, subject
    return None


def parse_date(value: Any) -> datetime | None:
    """``/Date(1767225600000)/`` (Windows PowerShell 5.1) or ISO 8601 (PowerShell 7)."""
    if isinstance(value, str):
        match = _DATE.match(value)
        if match:
            return datetime.fromtimestamp(int(match.group(1)) / 1000, UTC)
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if (
        isinstance(value, dict) and "DateTime" in value
    ):  # "NotAfter": {"value": ..., "DateTime": ...}
        return parse_date(value.get("value"))
    return None


def _host(value: Any) -> str:
    if isinstance(value, dict):  # SmartHost objects: {"Domain": {"Domain": "..."}, "Address": ...}
        domain = value.get("Domain")
        if isinstance(domain, dict):
            domain = domain.get("Domain")
        return str(domain or value.get("Address") or "")
    return str(value)


def _names(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value] if value else []
    names = []
    for item in items:
        name = item.get("Address") or item.get("Domain") if isinstance(item, dict) else item
        if isinstance(name, str) and name:
            names.append(name.lower())
    return tuple(names)


def certificate(item: dict[str, Any]) -> ExchangeCertificate:
    services = item.get("Services")
    smtp = (
        "SMTP" in str(services).upper()
        if isinstance(services, str | list)
        else bool(
            isinstance(services, int) and services & 0x10  # AllowedServices.SMTP
        )
    )
    return ExchangeCertificate(
        str(item.get("Thumbprint", "")),
        str(item.get("Subject", "")),
        str(item.get("Issuer", "")),
        parse_date(item.get("NotAfter")),
        smtp,
        _names(item.get("CertificateDomains")),
    )


def send_connector(item: dict[str, Any]) -> SendConnector:
    hosts = item.get("SmartHosts") or []
    hosts = hosts if isinstance(hosts, list) else [hosts]
    name = item.get("TlsCertificateName")
    split = split_tls_name(name)
    return SendConnector(
        str(item.get("Name") or item.get("Identity") or "(unnamed)"),
        item.get("Enabled") is not False,
        tuple(_host(h) for h in hosts),
        f"<I>{split[0]}<S>{split[1]}" if split else None,
    )


def toward_exchange_online(connector: SendConnector) -> bool:
    return any(EXO_SMART_HOST.search(h) for h in connector.smart_hosts)


def judge(
    send: SendConnector,
    installed: list[ExchangeCertificate],
    connector: Connector | None,
    accepted: tuple[str, ...],
    now: datetime,
) -> list[Finding]:
    """The findings for one Send connector toward Exchange Online."""
    where = f"Send connector '{send.name}'"
    split = split_tls_name(send.tls_certificate_name)
    if split is None:
        return [
            Finding(
                "exchange.send_certificate_missing",
                Severity.CRITICAL,
                f"{where} has no TlsCertificateName: Exchange presents no client certificate to "
                "Exchange Online, which refuses relayed mail with 550 5.7.64 ATTR36",
            )
        ]
    issuer, subject = (dn_parts(x) for x in split)
    matches = [
        c for c in installed if dn_parts(c.issuer) == issuer and dn_parts(c.subject) == subject
    ]
    if not matches:
        renewed = [c for c in installed if dn_parts(c.subject) == subject]
        hint = (
            f"; a certificate with that subject from issuer '{renewed[0].issuer}' is installed "
            f"(thumbprint {renewed[0].thumbprint}): set TlsCertificateName to "
            f"'<I>{renewed[0].issuer}<S>{renewed[0].subject}'"
            if renewed
            else ""
        )
        return [
            Finding(
                "exchange.send_certificate_missing",
                Severity.CRITICAL,
                f"{where}: TlsCertificateName '{send.tls_certificate_name}' matches no installed "
                "certificate, so Exchange presents none and Exchange Online refuses relayed mail "
                f"(550 5.7.64 ATTR36){hint}",
            )
        ]
    findings: list[Finding] = []
    if len(matches) > 1:
        findings.append(
            Finding(
                "exchange.send_certificate_ambiguous",
                Severity.WARNING,
                f"{where}: TlsCertificateName matches {len(matches)} installed certificates "
                f"({', '.join(c.thumbprint for c in matches)}); Exchange picks one of them, remove "
                "the ones that are not meant to be used",
            )
        )
    usable = [c for c in matches if c.smtp and (c.not_after is None or c.not_after > now)]
    if not usable:
        cert = matches[0]
        if not cert.smtp:
            why = "is not enabled for SMTP (Enable-ExchangeCertificate -Services SMTP)"
        else:
            why = f"expired on {cert.not_after:%Y-%m-%d}"
        findings.append(
            Finding(
                "exchange.send_certificate_unusable",
                Severity.CRITICAL,
                f"{where}: the certificate it names ({cert.thumbprint}) {why}; Exchange "
                "presents no client certificate and relayed mail fails with ATTR36",
            )
        )
        return findings
    cert = usable[0]
    if connector is not None:
        pattern = connector.tls_sender_certificate_name
        names = cert.names or tuple(
            v.split("=", 1)[1] for rdn in dn_parts(cert.subject) for v in rdn if v.startswith("cn=")
        )
        if not any(connector_match(pattern, n) for n in names):
            findings.append(
                Finding(
                    "connector.name_not_covered",
                    Severity.CRITICAL,
                    f"{where}: its certificate ({cert.thumbprint}) names "
                    f"{', '.join(names) or 'nothing'}, not '{pattern}' of connector "
                    f"'{connector.name}'",
                )
            )
        if registered_domain(base_domain(pattern), accepted) is None:
            findings.append(
                Finding(
                    "connector.domain_not_registered",
                    Severity.CRITICAL,
                    f"connector '{connector.name}' uses '{base_domain(pattern)}', "
                    "not an accepted domain",
                )
            )
    return findings
