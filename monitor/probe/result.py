"""What a probe is given (:class:`ProbeTarget`) and what it records (:class:`ProbeResult`):
plain data, shared by the probe, the pipeline and the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509

from checks.base import (
    Baseline,
    Direction,
    MtaStsEvidence,
    Observation,
    ProbeStatus,
    RevocationEvidence,
    TlsaEvidence,
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
            baseline=baseline,
            peers=peers,
            served=served,
        )
