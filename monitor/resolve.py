"""Turn an endpoint into the addresses to probe: pinned ``addresses`` or every A/AAAA of ``host``.

Resolution goes through the system resolver (``getaddrinfo``), the same view of the name the
mail server's peers on this network have, including ``/etc/hosts``; it is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import socket

from monitor.errors import ProbeError, ProbeTimeoutError


async def resolve(host: str, port: int, timeout: float) -> list[str]:  # noqa: ASYNC109
    """Every distinct IPv4 and IPv6 address of ``host``, in resolver order."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError as exc:
        raise ProbeTimeoutError("resolve", f"{host} did not resolve within {timeout:g}s") from exc
    except socket.gaierror as exc:
        raise ProbeError("resolve", f"{host} does not resolve: {exc.strerror}") from exc
    addresses: list[str] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            address = str(sockaddr[0])
            if address not in addresses:
                addresses.append(address)
    if not addresses:
        raise ProbeError("resolve", f"{host} has no A or AAAA record")
    return addresses
