"""The records a scan produces: one probe result with its parsed chain and its findings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from checks.base import (
    UNKNOWN_DELIVERY,
    Baseline,
    DeliveryContract,
    Direction,
    Finding,
    Severity,
    TlsaEvidence,
    worst,
)
from monitor.probe.result import ProbeResult


@dataclass(frozen=True, slots=True)
class ScanRecord:
    """One probe result with its parsed chain and its findings, ready to be stored.

    ``evaluated`` are the rules that ran (a rule that did not run says nothing); ``baseline`` is
    the accepted certificate it was compared with and ``candidate`` what accepting this
    observation would make the baseline; ``delivery`` the contract a served certificate was
    judged by.
    """

    result: ProbeResult
    chain: tuple[x509.Certificate, ...]
    findings: tuple[Finding, ...]
    mode: str
    connector: str | None
    evaluated: frozenset[str] = frozenset()
    baseline: Baseline | None = None
    candidate: Baseline | None = None
    # The served direction's delivery contract it was judged by (None: unknown, judged as
    # CertificateValidation; always None for the client direction).
    delivery: DeliveryContract | None = None

    def contract(self) -> dict[str, Any] | None:
        """What the served certificate was judged by, for output and the store: ``contract``
        is one line naming the connector, TlsSettings, DANE and MTA-STS (``None`` for the
        client direction)."""
        result = self.result
        if result.target.direction is not Direction.FROM_EXO:
            return None
        dane = _dane_text(result.tlsa)
        mtasts = "; ".join(
            f"{p.domain} {p.mode}" if p.error is None else f"{p.domain} (unreadable)"
            for p in result.mtasts
        )
        contract = self.delivery
        line = contract.describe() if contract is not None else UNKNOWN_DELIVERY
        line += f"; DANE: {dane}" if dane else ""
        line += f"; MTA-STS: {mtasts}" if mtasts else ""
        summary: dict[str, Any] = {"known": contract is not None, "contract": line}
        if contract is not None:
            summary |= {
                "connector": contract.connector,
                "tls_settings": contract.tls_settings,
                "tls_domain": contract.tls_domain,
                "dane_mode": contract.dane_mode,
                "mta_sts_mode": contract.mta_sts_mode,
            }
        summary |= {"dane": dane, "mtasts": mtasts or None}
        return summary


def _dane_text(tlsa: TlsaEvidence | None) -> str | None:
    if tlsa is None:
        return None
    if tlsa.error is not None:
        return "TLSA lookup failed"
    if not tlsa.records:
        return "no TLSA record"
    count = len(tlsa.records)
    validated = "DNSSEC-validated" if tlsa.validated else "not DNSSEC-validated"
    return f"{count} TLSA record{'s' if count > 1 else ''}, {validated}"


def exit_code(records: Sequence[ScanRecord]) -> int:
    """Monitoring-plugin convention: 0 ok/info, 1 warning, 2 critical, 3 unknown."""
    severity = worst(f.severity for r in records for f in r.findings)
    return severity.exit_code if severity else 0


def has_problems(records: Sequence[ScanRecord]) -> bool:
    """Does any record have a finding of severity unknown or worse (the progress count)?"""
    return any(f.severity.rank >= Severity.UNKNOWN.rank for r in records for f in r.findings)
