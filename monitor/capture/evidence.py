"""Every delivery of a check's token, kept: evidence is never first-come.

A token is in the on-prem server's mail log and, when it relays without TLS, in clear on the
wire, so whoever reads it can deliver it too.  Each delivery of a valid token is a
:class:`Delivery` in its token's :class:`Evidence` (none is refused as "already used"); whether
it counts for the check's verdict depends only on the endpoint's optional ``relay_addresses``
(:class:`RelayPeers`): without them every delivery counts and the judge keeps the worse, with
them a delivery from any other peer is kept, shown and never counted.  Neither the peer nor the
EHLO name ever *attributes* a capture to an endpoint: only the token does.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography import x509

from checks.base import DeliveryEvidence
from monitor.capture.dialogue import Capture

MAX_DELIVERIES = 32  # kept per token; more are still handed on as unattributed captures

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(peer: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:192.0.2.7 is 192.0.2.7
    return mapped or ip


@dataclass(frozen=True)
class RelayPeers:
    """The addresses an endpoint's relay delivers from (``relay_addresses``, checked at load:
    addresses or networks)."""

    networks: tuple[Network, ...]
    text: str  # as configured, for messages

    @classmethod
    def of(cls, addresses: Iterable[str]) -> RelayPeers | None:
        """The peers ``addresses`` name, or ``None`` for an empty list (every peer counts)."""
        listed = tuple(addresses)
        if not listed:
            return None
        networks = tuple(ipaddress.ip_network(a, strict=True) for a in listed)
        return cls(networks, ", ".join(listed))

    def allows(self, peer: str) -> bool:
        ip = _address(peer)
        return ip is not None and any(ip in network for network in self.networks)

    def refusal(self, peer: str, endpoint: str | None = None) -> str:
        whose = f" of {endpoint}" if endpoint else ""
        return f"delivered from {peer}, which is not in the relay_addresses{whose} ({self.text})"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery of a token: the session, whether it counts for the check (``why`` not)."""

    capture: Capture
    counted: bool = True
    why: str | None = None

    def evidence(self) -> DeliveryEvidence:
        """What the capture rules see of it."""
        capture = self.capture
        leaf = capture.chain_der[0] if capture.chain_der else None
        return DeliveryEvidence(
            peer=capture.peer,
            ehlo=capture.ehlo,
            tls_version=(capture.tls_version or "TLS") if capture.tls else None,
            leaf_sha256=hashlib.sha256(leaf).hexdigest() if leaf is not None else None,
            leaf_subject=_subject(leaf),
            at=capture.at,
            counted=self.counted,
        )


def _subject(der: bytes | None) -> str | None:
    if der is None:
        return None
    try:
        return x509.load_der_x509_certificate(der).subject.rfc4514_string()[:200]
    except ValueError:  # what a client presents is attacker-controlled
        return "(unparsable certificate)"


@dataclass
class Evidence:
    """Every delivery of one token so far, for the check that issued it: ``relay`` (its
    ``relay_addresses``) decides which count; ``future`` completes with the first that counts
    while the check waits."""

    token: str
    relay: RelayPeers | None = None
    endpoint: str | None = None
    future: asyncio.Future[Capture] | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    waiting: bool = True
    settled: int = 0  # deliveries already taken into the check's result (by ``settle``)

    @property
    def full(self) -> bool:
        return len(self.deliveries) >= MAX_DELIVERIES

    def add(self, capture: Capture) -> Delivery | None:
        """Record ``capture``; ``None`` when the token already has :data:`MAX_DELIVERIES`."""
        if self.full:
            return None
        counted = self.relay is None or self.relay.allows(capture.peer)
        why = None if counted else self.relay.refusal(capture.peer, self.endpoint)  # type: ignore[union-attr]
        delivery = Delivery(capture, counted, why)
        self.deliveries.append(delivery)
        if counted and self.future is not None and not self.future.done():
            self.future.set_result(capture)
        return delivery
