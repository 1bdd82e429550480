"""The report as plain data: what :mod:`.assemble` builds and :mod:`.render` renders."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from checks.base import Severity
from monitor.certview import CertInfo
from monitor.reports.daily import Day


@dataclass(frozen=True)
class Event:
    at: datetime
    # renewal | names_changed | issuer_changed | certificate_changed | drift | alert_opened |
    # alert_resolved
    kind: str
    text: str


@dataclass
class AddressReport:
    endpoint: str
    host: str
    port: int
    address: str
    connector: str | None
    direction: str  # from_exchange_online (served) | to_exchange_online (client)
    status: str
    last_probe: datetime | None
    tls_version: str | None
    certificate: CertInfo | None
    findings: list[tuple[str, str, str]]  # severity, rule, message
    events: list[Event] = field(default_factory=list)
    attempts: int = 0
    successes: int = 0
    # Set when the address is not answering: when its certificate was last seen.
    last_seen: datetime | None = None
    # Whether the newest probe measured anything (False: unreachable, or never arrived).
    measured: bool = True
    # The served direction: the delivery contract its certificate was judged by (one line).
    contract: str | None = None

    @property
    def label(self) -> str:
        """``endpoint (address)``, with ``client`` for the client-certificate direction."""
        client = ", client" if self.direction == "to_exchange_online" else ""
        return f"{self.endpoint} ({self.address or 'unresolved'}{client})"

    @property
    def worst(self) -> str | None:
        ranks = [Severity(s) for s, _, _ in self.findings]
        top = max(ranks, key=lambda s: s.rank, default=None)
        return top.value if top else None

    @property
    def availability(self) -> float | None:
        return round(100 * self.successes / self.attempts, 2) if self.attempts else None


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    description: str
    works: bool | None  # None: unknown (no successful probe)
    evidence: str
    error: str | None
    fix: str | None
    affected: list[str] = field(default_factory=list)  # the addresses that break it


@dataclass
class ConnectorReport:
    """One connector, both directions side by side.

    ``scenarios`` are the relay scenarios (the on-prem server as TLS client, attributed by its
    client certificate: 550 5.7.64 ATTR36), judged from outbound checks; ``relay_basis`` says
    what they rest on, and ``relay_inferred`` that no outbound check was measured so they are
    inferred from the served certificate.  ``delivery`` is Exchange Online delivering to the
    on-prem listener (450 4.4.317), judged from the listener probes.
    """

    name: str
    value: str
    domain: str
    accepted_domain: str | None
    verdict: str
    scenarios: list[Scenario]
    endpoints: list[str]
    relay_basis: str = ""
    relay_inferred: bool = True
    delivery: Scenario | None = None


@dataclass
class Report:
    tenant: str
    docs_url: str
    period_start: datetime
    period_end: datetime
    generated_at: datetime
    verdict: str
    counts: dict[str, int]
    connectors: list[ConnectorReport]
    addresses: list[AddressReport]
    timeline: list[tuple[str, CertInfo]]  # label, certificate
    upcoming: list[tuple[str, CertInfo]]  # expiring within 90 days
    renewals: list[dict[str, object]] = field(default_factory=list)  # ACME attempts in period
    # The newest captures of the period that no valid token attributes to a check (test sends
    # included, marked): shown, never part of a verdict.  ``unattributed_total`` counts all.
    unattributed: list[dict[str, object]] = field(default_factory=list)
    unattributed_total: int = 0
    # Per UTC day of the period: probes attempted and succeeded, addresses with a critical
    # alert open (the chart); ``known_addresses`` is the compliance denominator.
    daily: list[Day] = field(default_factory=list)
    known_addresses: int = 0
