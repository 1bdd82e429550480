"""Turn an endpoint into the addresses to probe: pinned ``addresses`` or every A/AAAA of ``host``.

By default resolution goes through the system resolver (``getaddrinfo``): the view of the name
this host has, ``/etc/hosts`` included.  With ``[dns] nameservers`` it asks those servers
directly with dnspython (e.g. the internal DNS the mail servers use).  Both are bounded by the
timeout; failures become :class:`~monitor.errors.ProbeError` with step ``resolve``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence

from monitor.errors import ProbeError, ProbeTimeoutError


async def resolve(
    host: str, port: int, timeout: float, nameservers: Sequence[tuple[str, int]] = ()
) -> list[str]:
    """Every distinct IPv4 and IPv6 address of ``host``, in resolver order."""
    if nameservers:
        addresses = await _ask(host, timeout, nameservers)
    else:
        addresses = await _system(host, port, timeout)
    if not addresses:
        raise ProbeError("resolve", f"{host} has no A or AAAA record")
    return addresses


async def _system(host: str, port: int, timeout: float) -> list[str]:
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
        address = str(sockaddr[0])
        if family in (socket.AF_INET, socket.AF_INET6) and address not in addresses:
            addresses.append(address)
    return addresses


async def _ask(host: str, timeout: float, nameservers: Sequence[tuple[str, int]]) -> list[str]:
    # dnspython only when [dns] nameservers is set (a check on pinned addresses never needs it)
    import dns.asyncresolver
    import dns.exception
    import dns.nameserver
    import dns.rdatatype
    import dns.resolver

    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(ip, port) for ip, port in nameservers]
    addresses: list[str] = []
    missing = 0
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        try:
            answer = await resolver.resolve(host, rdtype, lifetime=timeout, search=False)
        except dns.resolver.NXDOMAIN as exc:
            raise ProbeError("resolve", f"{host} does not exist (NXDOMAIN)") from exc
        except dns.resolver.NoAnswer:
            missing += 1
            continue
        except dns.exception.Timeout as exc:
            raise ProbeTimeoutError(
                "resolve", f"{host}: no DNS answer within {timeout:g}s"
            ) from exc
        except dns.exception.DNSException as exc:
            raise ProbeError("resolve", f"{host}: DNS lookup failed: {exc}") from exc
        addresses.extend(r.address for r in answer if r.address not in addresses)
    return addresses
