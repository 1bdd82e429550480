"""What a probe is given (:class:`ProbeTarget`) and what it records (:class:`ProbeResult`):
plain data, shared by the probe, the pipeline and the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509

from checks.base import Observation, ProbeStatus


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """One address of one endpoint.  ``host`` is used for SNI and name checks."""

    endpoint: str
    host: str
    port: int
    address: str
    mode: str  # "starttls" | "tls"
    ehlo_name: str
    timeout: float


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

    def observation(self, chain: tuple[x509.Certificate, ...]) -> Observation:
        """The rules' view of this result; ``chain`` is ``chain_der`` parsed (cached by caller)."""
        return Observation(
            status=self.status,
            chain=chain,
            host=self.target.host,
            port=self.target.port,
            address=self.target.address,
            tls_version=self.tls_version,
            failed_step=self.failed_step,
            error=self.error,
        )
