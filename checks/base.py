"""The rule contract: what a rule receives, what it returns, and how severe that is.

A rule is a pure function of an :class:`Observation` (what one probe of one address saw, or what a
certificate file holds) and a :class:`Policy` (the connector, the tenant's accepted domains, the
thresholds, the trust anchors and the current time).  Rules do no I/O and never raise for a bad
certificate: a problem is a :class:`Finding`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from cryptography import x509

# The delivery contract's types live in checks/contract.py; re-exported with the contract.
from checks.contract import UNKNOWN_DELIVERY as UNKNOWN_DELIVERY
from checks.contract import DeliveryContract as DeliveryContract
from checks.contract import DeliveryEvidence as DeliveryEvidence
from checks.contract import MtaStsEvidence as MtaStsEvidence
from checks.contract import RevocationEvidence as RevocationEvidence
from checks.contract import TlsaEvidence as TlsaEvidence
from checks.contract import TlsaRecord as TlsaRecord
from checks.thresholds import ExpiryThresholds as ExpiryThresholds

DOCS_BASE = "https://github.com/relaycert/relaycert/blob/main/docs/rules.md"


def anchor(rule_id: str) -> str:
    """The rule's heading anchor in docs/rules.md (``cert.expiring`` -> ``certexpiring``)."""
    return rule_id.replace(".", "")


class Severity(enum.Enum):
    """How bad a finding is.  Ordered by :attr:`rank` (worst last).

    ``unknown`` means the probe could not complete, so nothing is known about the certificate;
    it ranks above ``warning`` and below ``critical``, as monitoring plugins aggregate states.
    """

    INFO = "info"
    WARNING = "warning"
    UNKNOWN = "unknown"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def exit_code(self) -> int:
        """The monitoring-plugin exit code (0 ok, 1 warning, 2 critical, 3 unknown)."""
        return _EXIT[self]


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.UNKNOWN: 2, Severity.CRITICAL: 3}
_EXIT = {Severity.INFO: 0, Severity.WARNING: 1, Severity.UNKNOWN: 3, Severity.CRITICAL: 2}


def worst(severities: Iterable[Severity]) -> Severity | None:
    """The worst severity of ``severities``, or ``None`` when there are none."""
    return max(severities, key=lambda s: s.rank, default=None)


class ProbeStatus(enum.Enum):
    """How far a probe got."""

    OK = "ok"  # a TLS session was established and the chain captured
    UNREACHABLE = "unreachable"  # resolve, connect, greeting or EHLO failed, or a timeout
    STARTTLS_MISSING = "starttls_missing"  # EHLO did not offer STARTTLS
    STARTTLS_REFUSED = "starttls_refused"  # STARTTLS offered but answered with an error
    HANDSHAKE_FAILED = "handshake_failed"  # the TLS handshake itself failed
    FILE = "file"  # the chain was read from a file, not from a server
    # Outbound checks (the on-prem server as a TLS client, seen by the capture listener):
    NO_CLIENT_CERT = "no_client_cert"  # delivered over TLS without a client certificate
    NO_TLS = "no_tls"  # delivered without TLS
    NOT_DELIVERED = "not_delivered"  # submitted, but never arrived at the capture listener


class Direction(enum.Enum):
    """Which way the mail flows, seen from Exchange Online, and so which certificate a verdict
    is about.

    ``from_exchange_online``: Exchange Online delivers to the on-prem server, which is the TLS
    *server*; the probe of its listener sees exactly that certificate (failures: 450 4.4.317).
    ``to_exchange_online``: the on-prem server relays through Exchange Online as the TLS
    *client*; the capture listener sees the client certificate Exchange Online attributes the
    mail by (failures: 550 5.7.64 ATTR36).
    """

    FROM_EXO = "from_exchange_online"
    TO_EXO = "to_exchange_online"

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Direction.FROM_EXO: "delivery from Exchange Online (served certificate)",
    Direction.TO_EXO: "relay to Exchange Online (client certificate)",
}


@dataclass(frozen=True, slots=True)
class Baseline:
    """The certificate last accepted for one endpoint address (see ``relaycert accept``)."""

    sha256: str
    names: tuple[str, ...]
    issuer: str
    spki_sha256: str
    tls_version: str | None = None


@dataclass(frozen=True, slots=True)
class Observation:
    """What one probe of one endpoint address saw (or what a certificate file holds).

    ``chain`` is the certificate chain exactly as presented, leaf first.  ``host`` is the name
    used for SNI and host-name checks (``None`` for a file).
    """

    status: ProbeStatus
    chain: tuple[x509.Certificate, ...] = ()
    host: str | None = None
    port: int | None = None
    address: str | None = None
    tls_version: str | None = None
    failed_step: str | None = None
    error: str | None = None
    baseline: Baseline | None = None
    # Leaf fingerprints served by the endpoint's other addresses in the same scan, by address.
    peers: tuple[tuple[str, str], ...] = ()
    # ``None`` for a certificate file (it is not presented in either direction yet).
    direction: Direction | None = None
    # Outbound checks only: consecutive probes that never arrived, this one included, and the
    # leaf fingerprints the endpoint's listener serves (to tell the two certificates apart).
    misses: int = 0
    served: tuple[str, ...] = ()
    # Legacy TLS versions (TLSv1, TLSv1.1) the server accepts besides the negotiated one.
    legacy_versions: tuple[str, ...] = ()
    # The served direction's TLSA records, when its delivery contract asks for DANE.
    tlsa: TlsaEvidence | None = None
    # The MTA-STS policies of the recipient domains this host is an MX of (MX routing).
    mtasts: tuple[MtaStsEvidence, ...] = ()
    # What the leaf's CRL says (None: not checked: [revocation] off, or no CRL to check).
    revocation: RevocationEvidence | None = None
    # Outbound checks only: every delivery of the check's token, in order (one, normally).
    deliveries: tuple[DeliveryEvidence, ...] = ()

    @property
    def leaf(self) -> x509.Certificate | None:
        return self.chain[0] if self.chain else None

    @property
    def where(self) -> str:
        """``host:port`` (with the address when it differs), for messages."""
        if self.host is None:
            return "file"
        where = f"{self.host}:{self.port}"
        if self.address and self.address != self.host:
            where += f" ({self.address})"
        if self.direction is Direction.TO_EXO:
            where += " as client"
        return where


@dataclass(frozen=True, slots=True)
class Connector:
    """The Exchange Online inbound connector an endpoint relays through."""

    name: str
    tls_sender_certificate_name: str


@dataclass(frozen=True, eq=False)
class TrustAnchors:
    """The trusted roots.  Compared and hashed by identity, so it is a cheap cache key for the
    chain verdicts of a whole scan (hashing ~150 root certificates per lookup is not)."""

    roots: tuple[x509.Certificate, ...] = ()


NO_ANCHORS = TrustAnchors()


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything a rule may compare an observation with.  ``now`` is injected (tz-aware UTC)."""

    now: datetime
    accepted_domains: tuple[str, ...] = ()
    connector: Connector | None = None
    expiry: ExpiryThresholds = field(default_factory=ExpiryThresholds)
    trust: TrustAnchors = NO_ANCHORS
    # outbound.not_delivered turns critical at this many consecutive misses
    misses_critical: int = 3
    # What Exchange Online checks when it delivers to the endpoint (served direction); None:
    # unknown, judged as CertificateValidation.
    delivery: DeliveryContract | None = None
    # cert.revocation_unknown is a warning once the CRL has been unknown this long.
    revocation_grace: timedelta = timedelta(days=1)

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("Policy.now must be timezone-aware (UTC)")


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule's verdict on one observation.  ``message`` carries the evidence."""

    rule: str
    severity: Severity
    message: str


@runtime_checkable
class Rule(Protocol):
    """A compliance rule.

    ``id`` is stable (it is stored, alerted on and documented); ``severity`` is the default
    severity; ``title``, ``why`` and ``fix`` are the documentation shown in ``docs/rules.md``.
    ``evaluate`` must be pure: no I/O, no clock (use ``policy.now``), no exceptions for bad input.
    """

    @property
    def id(self) -> str: ...

    @property
    def severity(self) -> Severity: ...

    @property
    def title(self) -> str: ...

    @property
    def why(self) -> str: ...

    @property
    def fix(self) -> str: ...

    def evaluate(self, obs: Observation, policy: Policy) -> Iterable[Finding]: ...


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """The metadata part of a rule, shared by the rule classes in each family module."""

    id: str
    severity: Severity
    title: str
    why: str
    fix: str

    def finding(self, message: str, severity: Severity | None = None) -> Finding:
        return Finding(self.id, severity or self.severity, message)

    @property
    def docs_url(self) -> str:
        return f"{DOCS_BASE}#{anchor(self.id)}"


CheckFunction = Callable[[RuleInfo, Observation, Policy], Iterable[Finding]]


@dataclass(frozen=True, slots=True)
class FunctionRule(RuleInfo):
    """A :class:`Rule` made of metadata and one pure function (see :func:`rule`)."""

    func: CheckFunction = field(default=lambda info, obs, policy: ())

    def evaluate(self, obs: Observation, policy: Policy) -> Iterable[Finding]:
        return self.func(self, obs, policy)


def rule(
    id: str, severity: Severity, title: str, why: str, fix: str
) -> Callable[[CheckFunction], FunctionRule]:
    """Decorate a pure check function into a documented :class:`Rule`."""

    def wrap(func: CheckFunction) -> FunctionRule:
        return FunctionRule(id, severity, title, why, fix, func)

    return wrap
