"""The vocabulary every package speaks: what a probe is given (:class:`ProbeTarget`), what it
records (:class:`ProbeResult`) and what a scan makes of it (:class:`ScanRecord`, one result with
its parsed chain and its findings, ready to be stored).

Plain data on the second floor, beside :mod:`checks.base`: the probe fills it, the pipeline
judges it, the store writes it and the alerts track it, so none of them imports another for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509

from checks.base import (
    UNKNOWN_DELIVERY,
    Baseline,
    DeliveryContract,
    DeliveryEvidence,
    Direction,
    Finding,
    MtaStsEvidence,
    Observation,
    ProbeStatus,
    RevocationEvidence,
    Severity,
    TlsaEvidence,
    worst,
)


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """One address of one endpoint.  ``host`` is used for SNI and name checks.

    ``direction`` says which certificate the result is about: the listener's (a probe of
    ``address:port``) or the client certificate the server relays with (an outbound check that
    submits to ``address:port`` and waits at the capture listener; ``mode`` is ``outbound``).
    """

    endpoint: str
    host: str
    port: int
    address: str
    mode: str  # "starttls" | "tls"
    ehlo_name: str
    timeout: float
    direction: Direction = Direction.FROM_EXO


@dataclass(slots=True)
class ProbeResult:
    """Everything one probe recorded, successful or not."""

    target: ProbeTarget
    started_at: datetime
    status: ProbeStatus = ProbeStatus.UNREACHABLE
    failed_step: str | None = None
    error: str | None = None
    banner: str | None = None
    ehlo: tuple[str, ...] = ()
    starttls_reply: str | None = None
    tls_version: str | None = None
    cipher: str | None = None
    chain_der: tuple[bytes, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    # Outbound checks: the capture session (peer, EHLO name, envelope, token), never a body.
    session: dict[str, Any] | None = None
    misses: int = 0
    # Legacy TLS versions the server also accepts (None: not checked this time).
    legacy_versions: tuple[str, ...] | None = None
    # The TLSA records of the host (served direction, when its delivery contract uses DANE).
    tlsa: TlsaEvidence | None = None
    # The MTA-STS policies of the recipient domains this host is an MX of.
    mtasts: tuple[MtaStsEvidence, ...] = ()
    # Set when this process could not measure at all for a reason of its own (the capture
    # port is another process's, no [capture] section): shown, never stored or alerted on, so
    # a one-shot command cannot put its own set-up failure into the daemon's store.
    local: bool = False
    # What the leaf's CRL says (set by the scanner before judging; None: not checked).
    revocation: RevocationEvidence | None = None
    # Outbound checks: every delivery of the check's token (the capture rules name them), and
    # the other deliveries that count, each as a result: the judge keeps the worse of them all.
    deliveries: tuple[DeliveryEvidence, ...] = ()
    rivals: tuple[ProbeResult, ...] = ()

    def observation(
        self,
        chain: tuple[x509.Certificate, ...],
        baseline: Baseline | None = None,
        peers: tuple[tuple[str, str], ...] = (),
        served: tuple[str, ...] = (),
    ) -> Observation:
        """The rules' view of this result; ``chain`` is ``chain_der`` parsed (cached by caller),
        with the drift context the judge adds."""
        return Observation(
            status=self.status,
            chain=chain,
            host=self.target.host,
            port=self.target.port,
            address=self.target.address,
            tls_version=self.tls_version,
            failed_step=self.failed_step,
            error=self.error,
            direction=self.target.direction,
            misses=self.misses,
            legacy_versions=self.legacy_versions or (),
            tlsa=self.tlsa,
            mtasts=self.mtasts,
            revocation=self.revocation,
            deliveries=self.deliveries,
            baseline=baseline,
            peers=peers,
            served=served,
        )


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
