"""The records a scan produces: one probe result with its parsed chain and its findings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from checks.base import Baseline, DeliveryContract, Finding, Severity, worst
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


def exit_code(records: Sequence[ScanRecord]) -> int:
    """Monitoring-plugin convention: 0 ok/info, 1 warning, 2 critical, 3 unknown."""
    severity = worst(f.severity for r in records for f in r.findings)
    return severity.exit_code if severity else 0


def has_problems(records: Sequence[ScanRecord]) -> bool:
    """Does any record have a finding of severity unknown or worse (the progress count)?"""
    return any(f.severity.rank >= Severity.UNKNOWN.rank for r in records for f in r.findings)
