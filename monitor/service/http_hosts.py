"""Which ``Host`` a request of the daemon's HTTP listener may name (DNS rebinding).

A page on ``evil.example`` whose name is then made to resolve to this host's address can read
what the listener answers, as the browser takes it for the page's own origin: the Host it sends
is ``evil.example``.  So a request is answered only when its Host is an IP address literal,
``localhost``, or a name in ``[daemon] http_hosts`` (a reverse proxy's).  Every address literal
is accepted, not only the listener's own: a rebinding needs a name of the attacker's, and a
literal address in Host means the page came from that address itself, which the same-origin
policy already fences; a Prometheus scraping ``http://10.0.0.5:9101/metrics`` sends
``Host: 10.0.0.5:9101`` and is answered whatever address the listener is bound to.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection


def host_allowed(header: str | None, names: Collection[str]) -> bool:
    """Whether ``Host: header`` names this listener: an address literal, ``localhost``, or
    one of ``names`` (lower case, without a trailing dot); a port is ignored."""
    host = _hostname(header or "")
    if not host:
        return False
    if host == "localhost" or host in names:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _hostname(header: str) -> str:
    value = header.strip().lower()
    if value.startswith("["):
        inside, _, rest = value[1:].partition("]")
        return inside if rest == "" or (rest[:1] == ":" and rest[1:].isdigit()) else ""
    name, colon, port = value.rpartition(":")
    if colon:
        if not port.isdigit() or ":" in name:
            return ""
        value = name
    return value.rstrip(".")
