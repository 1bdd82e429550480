"""Tenant drift: what changed in Exchange Online's configuration since relaycert last looked
(the connectors and accepted domains imported from Exchange's exports, or written by hand).
Pure: it compares two snapshots; the daemon stores them and alerts on the findings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from checks.base import Finding, RuleInfo, Severity

CHANGED = RuleInfo(
    "tenant.connector_changed",
    Severity.WARNING,
    "A connector's TlsSenderCertificateName changed",
    "Exchange Online now attributes relayed mail by another name. Certificates that matched the "
    "old value may no longer match (the endpoints' connector.name_not_covered says which).",
    "Check that the change was intended; if not, set the connector back "
    "(Set-InboundConnector -TlsSenderCertificateName).",
)
REMOVED = RuleInfo(
    "tenant.connector_removed",
    Severity.WARNING,
    "A certificate-based connector was removed or disabled",
    "Mail the on-prem servers relay is no longer attributed by that connector; NDRs, foreign "
    "senders and forwarded mail fail with 550 5.7.64 ATTR36 unless another connector matches.",
    "Re-enable or recreate the connector, or point the endpoints at the one that replaces it.",
)
DOMAIN_REMOVED = RuleInfo(
    "tenant.domain_removed",
    Severity.WARNING,
    "An accepted domain was removed",
    "A connector domain must be an accepted domain of the tenant; a connector under a removed "
    "domain stops working (connector.domain_not_registered then fires on its endpoints).",
    "Add the domain back (New-AcceptedDomain) or move the connector to an accepted domain.",
)
UNUSED = RuleInfo(
    "tenant.connector_unused",
    Severity.INFO,
    "A certificate-based connector no endpoint relays through",
    "relaycert watches no endpoint for this connector, so nothing checks the certificates that "
    "rely on it.",
    "Add the on-prem servers that relay through it as [[endpoints]] with connector = its name.",
)
RULES = (CHANGED, REMOVED, DOMAIN_REMOVED, UNUSED)


def snapshot(connectors: Mapping[str, str], accepted: Iterable[str]) -> dict[str, Any]:
    """What a later comparison needs: connector name -> TlsSenderCertificateName, domains."""
    return {"connectors": dict(sorted(connectors.items())), "accepted": sorted(set(accepted))}


def compare(
    old: Mapping[str, Any] | None, new: Mapping[str, Any], used: Iterable[str]
) -> list[Finding]:
    """The tenant's changes from ``old`` to ``new`` (nothing on the first look), and the
    connectors no endpoint (``used``) relays through."""
    findings: list[Finding] = []
    if old is not None:
        before, after = dict(old.get("connectors", {})), dict(new.get("connectors", {}))
        for name, value in sorted(before.items()):
            if name not in after:
                findings.append(REMOVED.finding(f"connector '{name}' ('{value}') is gone"))
            elif after[name] != value:
                findings.append(
                    CHANGED.finding(f"connector '{name}': '{value}' is now '{after[name]}'")
                )
        for domain in sorted(set(old.get("accepted", [])) - set(new.get("accepted", []))):
            findings.append(DOMAIN_REMOVED.finding(f"'{domain}' is no longer an accepted domain"))
    for name in sorted(set(new.get("connectors", {})) - set(used)):
        findings.append(UNUSED.finding(f"connector '{name}' has no endpoint in the configuration"))
    return findings
