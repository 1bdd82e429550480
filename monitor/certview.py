"""One view of a parsed certificate for people and programs: what the scan JSON, the status
and the compliance report show of it.  Text fields are clipped and free of control characters
(certificate text is attacker-controlled)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from checks.certinfo import (
    clip,
    dns_sans,
    extended_key_usages,
    fingerprint,
    issuer_text,
    key_description,
    signature_hash,
    subject_text,
)


@dataclass(frozen=True)
class CertInfo:
    subject: str
    sans: list[str]
    issuer: str
    serial: str
    sha256: str
    key: str
    signature: str | None
    ekus: list[str] | None
    not_before: datetime
    not_after: datetime
    days_left: float


def cert_info(cert: x509.Certificate, now: datetime, digits: int = 1) -> CertInfo:
    """``days_left`` is rounded to ``digits`` decimals."""
    kind, bits = key_description(cert)
    return CertInfo(
        subject_text(cert),
        [clip(n) for n in dns_sans(cert)],
        issuer_text(cert),
        format(cert.serial_number, "x"),
        fingerprint(cert),
        f"{kind} {bits}" if bits else kind,
        signature_hash(cert),
        extended_key_usages(cert),
        cert.not_valid_before_utc,
        cert.not_valid_after_utc,
        round((cert.not_valid_after_utc - now).total_seconds() / 86400, digits),
    )
