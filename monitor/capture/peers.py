"""Fair admission at the capture listener: who may open a session, counted per peer.

The on-prem servers come first: ``reserved`` connections are kept for *known* peers (addresses
of configured endpoints, addresses probe messages were submitted to, peers that delivered a
valid token), and while half the connections are in use other peers' sessions get the short
``stress_timeout`` per read, as Postfix's smtpd does under stress.  The per-peer limits count an
IPv4 address, or an IPv6 address's /64 (:func:`peer_group`).
"""

from __future__ import annotations

import ipaddress
import time
from collections import defaultdict, deque
from collections.abc import Iterable

PEERS_KEPT = 10_000  # peers remembered for the rate limit before the idle ones are swept


def normal_address(address: str) -> str:
    """``address`` in one spelling (IPv4-mapped IPv6 as IPv4), for comparing peers."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    mapped = getattr(parsed, "ipv4_mapped", None)
    return str(mapped or parsed)


def peer_group(address: str) -> str:
    """What the per-peer limits count: an IPv4 address, or an IPv6 address's /64 (one host or
    site is routinely given a whole /64, so counting single IPv6 addresses would let one
    client open as many sessions as it has addresses)."""
    try:
        parsed = ipaddress.ip_address(normal_address(address))
    except ValueError:
        return address
    if parsed.version == 4:
        return str(parsed)
    return str(ipaddress.ip_network(f"{parsed}/64", strict=False))


class Admission:
    """The sessions in use, per peer group and in all, the known peers, and each group's
    recent connections (for ``rate_per_peer`` a minute)."""

    def __init__(
        self,
        *,
        max_connections: int,
        reserved: int,
        max_per_peer: int,
        rate_per_peer: int,
        known: Iterable[str] = (),
    ) -> None:
        self.max_connections, self.reserved = max_connections, reserved
        self.max_per_peer, self.rate_per_peer = max_per_peer, rate_per_peer
        self._known = {normal_address(a) for a in known}
        self.active = 0
        self._per_peer: dict[str, int] = defaultdict(int)
        self._recent: dict[str, deque[float]] = defaultdict(deque)

    def know(self, address: str) -> None:
        """Count ``address`` as an on-prem server's (it may use the reserved connections)."""
        self._known.add(normal_address(address))

    def is_known(self, peer: str) -> bool:
        return normal_address(peer) in self._known

    def stressed(self) -> bool:
        """Whether half the connections are in use."""
        return self.active * 2 >= self.max_connections

    def refusal(self, group: str, known: bool) -> str | None:
        """Why a new connection from peer ``group`` is refused, or ``None`` (then it counts
        towards the group's rate)."""
        if self.active >= self.max_connections:
            return "too many connections"
        if not known and self.active >= self.max_connections - self.reserved:
            return "too many connections"
        if self._per_peer.get(group, 0) >= self.max_per_peer:
            return "too many connections from your address"
        now = time.monotonic()
        if len(self._recent) > PEERS_KEPT:  # many peers (an IPv6 range): forget the idle ones
            for gone in [p for p, r in self._recent.items() if not r or now - r[-1] > 60]:
                if gone not in self._per_peer:
                    del self._recent[gone]
        recent = self._recent[group]
        while recent and now - recent[0] > 60:
            recent.popleft()
        if len(recent) >= self.rate_per_peer:
            return "too many connections per minute from your address"
        recent.append(now)
        return None

    def enter(self, group: str) -> None:
        """An admitted session of ``group`` starts."""
        self.active += 1
        self._per_peer[group] += 1

    def leave(self, group: str) -> None:
        """A session of ``group`` ended."""
        self.active -= 1
        self._per_peer[group] -= 1
        if not self._per_peer[group]:
            del self._per_peer[group]
            if not self._recent[group]:
                del self._recent[group]
