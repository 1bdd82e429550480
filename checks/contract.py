"""What the delivery direction is judged by: the outbound connector's contract, and the DNS and
HTTPS evidence (TLSA records, MTA-STS policies) gathered for a host; and each delivery of an
outbound check's token.  Plain data, no I/O; ``checks.base`` re-exports every name."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class DeliveryContract:
    """What Exchange Online checks when it delivers to an endpoint: its outbound connector to
    the organization (``Get-OutboundConnector``, ConnectorType OnPremises) that names the
    endpoint's host as a smart host.

    ``tls_settings``: ``EncryptionOnly`` (TLS, the certificate not validated),
    ``CertificateValidation`` (a chain to a trusted root, valid now), ``DomainValidation``
    (also a name matching ``tls_domain``), or ``None`` (TlsSettings not set: opportunistic TLS,
    nothing validated).  ``unmonitored``: the connector's other smart hosts that no endpoint
    probes (those delivery paths are not measured)."""

    connector: str
    tls_settings: str | None
    tls_domain: str | None = None
    dane_mode: str = "Opportunistic"
    mta_sts_mode: str = "Opportunistic"
    unmonitored: tuple[str, ...] = ()

    @property
    def validates(self) -> bool:
        """Does Exchange Online validate the certificate (chain and dates) before delivering?"""
        return self.tls_settings in ("CertificateValidation", "DomainValidation")

    def describe(self) -> str:
        """One line naming the contract, for verdicts and messages."""
        settings = self.tls_settings or "not set (opportunistic TLS)"
        text = f"outbound connector '{self.connector}', TlsSettings {settings}"
        if self.tls_settings == "DomainValidation" and self.tls_domain:
            text += f", TlsDomain {self.tls_domain}"
        return text


@dataclass(frozen=True, slots=True)
class TlsaRecord:
    """One TLSA record (RFC 6698): certificate usage, selector, matching type, data."""

    usage: int
    selector: int
    mtype: int
    data: bytes

    def text(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"


@dataclass(frozen=True, slots=True)
class TlsaEvidence:
    """The TLSA lookup of ``_25._tcp.<host>`` (Exchange Online delivers on port 25).
    ``validated``: the validating resolver set the AD bit (DNSSEC-signed and verified);
    ``error``: the lookup failed (SERVFAIL, a timeout), so nothing is known."""

    name: str
    records: tuple[TlsaRecord, ...] = ()
    validated: bool = False
    error: str | None = None
    ttl: int | None = None  # the records' TTL, seconds


@dataclass(frozen=True, slots=True)
class MtaStsEvidence:
    """The MTA-STS policy (RFC 8461) of a recipient domain whose MX host an endpoint is.
    ``present`` False: the domain publishes no ``_mta-sts`` record; ``error``: a policy is
    announced (or may be) but could not be read."""

    domain: str
    present: bool = True
    mode: str | None = None  # enforce | testing | none
    mx: tuple[str, ...] = ()
    max_age: int | None = None
    error: str | None = None


UNKNOWN_DELIVERY = (
    "delivery contract unknown (no outbound connector to the organization names this host): "
    "judged as CertificateValidation"
)


@dataclass(frozen=True, slots=True)
class RevocationEvidence:
    """What the leaf's CRL says about it (``cert.revoked``, ``cert.revocation_unknown``).

    ``status``: ``good`` (listed in no CRL that was fetched and verified), ``revoked``, or
    ``unknown`` (no CRL could be fetched or verified; ``error`` says why, ``unknown_since``
    since when, for the grace before it warns).  ``url`` is the distribution point used."""

    status: str
    url: str | None = None
    reason: str | None = None  # the CRL entry's reason code (keyCompromise, superseded, ...)
    revoked_at: datetime | None = None
    error: str | None = None
    unknown_since: datetime | None = None
    next_update: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeliveryEvidence:
    """One delivery of an outbound check's token at the capture listener: who delivered it
    (peer address, EHLO name), over what (``tls_version`` ``None``: without TLS) and with which
    client certificate (``leaf_sha256`` ``None``: none).  ``counted`` is False for a delivery
    from a peer outside the endpoint's ``relay_addresses``: shown, never the verdict."""

    peer: str
    ehlo: str | None
    tls_version: str | None
    leaf_sha256: str | None
    leaf_subject: str | None
    at: datetime
    counted: bool = True

    def describe(self) -> str:
        """One line naming the delivery, for findings."""
        tls = f"over {self.tls_version}" if self.tls_version else "without TLS"
        if self.leaf_sha256 is None:
            cert = "no client certificate" if self.tls_version else "no certificate"
        else:
            cert = f"certificate {self.leaf_subject or '(no subject)'} {self.leaf_sha256[:16]}..."
        ehlo = self.ehlo if self.ehlo is not None else "(none)"
        return f"{self.peer} (EHLO {ehlo}) at {self.at:%H:%M:%S} {tls}, {cert}"
