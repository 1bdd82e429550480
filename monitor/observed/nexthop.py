"""Which deliveries are to Exchange Online: the next hop is ``*.mail.protection.outlook.com``
(the tenant's MX, what a connector relay uses), ``smtp.office365.com`` (client submission), or
a smart host the configuration names (a host, ``host:port`` or ``[address]:port``, as in
Postfix's ``relayhost``).  Everything else a relay delivers is ignored."""

from __future__ import annotations

from collections.abc import Iterable

EXCHANGE_ONLINE_SUFFIX = ".mail.protection.outlook.com"
SUBMISSION = "smtp.office365.com"


class NextHops:
    def __init__(self, smart_hosts: Iterable[str] = ()) -> None:
        self.hosts: set[str] = set()
        self.host_ports: set[tuple[str, int]] = set()
        for entry in smart_hosts:
            host, port = _split(entry.strip().lower())
            if port is None:
                self.hosts.add(host)
            else:
                self.host_ports.add((host, port))
        self._seen: dict[tuple[str, str, int | None], bool] = {}

    def is_exchange_online(self, host: str, address: str, port: int | None) -> bool:
        key = (host, address, port)
        known = self._seen.get(key)
        if known is None:
            known = self._judge(host.lower().rstrip("."), address, port)
            if len(self._seen) < 10_000:
                self._seen[key] = known
        return known

    def _judge(self, host: str, address: str, port: int | None) -> bool:
        if host.endswith(EXCHANGE_ONLINE_SUFFIX) or host == SUBMISSION:
            return True
        names = (host, address)
        if any(name in self.hosts for name in names):
            return True
        return port is not None and any((name, port) in self.host_ports for name in names)


def _split(entry: str) -> tuple[str, int | None]:
    """``[127.0.0.1]:2525`` -> (127.0.0.1, 2525); ``relay.example`` -> (relay.example, None)."""
    host, port = entry, None
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif entry.count(":") == 1:
        head, _, tail = entry.partition(":")
        if tail.isdigit():
            host, port = head, int(tail)
    return host, port
