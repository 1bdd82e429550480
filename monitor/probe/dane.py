"""TLSA lookups for DANE (RFC 7672): ``_25._tcp.<host>``, asked with DO and AD set.

Like Postfix with ``smtp_dns_support_level = dnssec``, relaycert does not validate DNSSEC
itself: it trusts the AD bit of the resolver it asks, which must be a validating resolver it
can trust (``[dns] nameservers``, e.g. unbound on the same host; or the system's resolvers from
``/etc/resolv.conf``).  Every lookup is bounded by the timeout; a failure (SERVFAIL, which a
validating resolver answers for a zone whose signatures do not verify, or no answer at all) is
evidence of nothing, and the rules report it as unknown, never as "ok".
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from checks.base import TlsaEvidence, TlsaRecord
from checks.certinfo import clip

MAX_RECORDS = 32  # a host publishes a few (current and next key); more is not believed
MAX_DATA = 16_384  # a full certificate (matching type 0) at most


def tlsa_name(host: str) -> str:
    return f"_25._tcp.{host.lower().rstrip('.')}."


def _system_nameservers() -> list[tuple[str, int]]:
    import dns.resolver

    try:
        resolver = dns.resolver.Resolver(configure=True)
    except Exception:  # no /etc/resolv.conf
        return []
    return [(str(ns), 53) for ns in resolver.nameservers]


async def lookup(
    host: str, timeout: float, nameservers: Sequence[tuple[str, int]] = ()
) -> TlsaEvidence:
    """The TLSA records of ``host``'s port 25, and whether the resolver validated them.

    The query runs in a thread with dnspython's blocking client: whatever event loop runs
    relaycert (uvloop's sockets are libuv's), its DNS traffic goes through Python's sockets,
    bounded by ``timeout`` per server."""
    return await asyncio.to_thread(_lookup, host, timeout, tuple(nameservers))


def _lookup(host: str, timeout: float, nameservers: tuple[tuple[str, int], ...]) -> TlsaEvidence:
    import dns.exception
    import dns.flags
    import dns.message
    import dns.query
    import dns.rdatatype

    name = tlsa_name(host)
    servers = list(nameservers) or _system_nameservers()
    if not servers:
        return TlsaEvidence(name, error="no DNS resolver is configured ([dns] nameservers)")
    query = dns.message.make_query(name, dns.rdatatype.TLSA, want_dnssec=True)
    query.flags |= dns.flags.AD  # RFC 6840 5.7: ask for the AD bit
    failures: list[str] = []
    for address, port in servers:
        try:
            response = dns.query.udp(query, address, timeout=timeout, port=port)
            if response.flags & dns.flags.TC:
                response = dns.query.tcp(query, address, timeout=timeout, port=port)
        except dns.exception.Timeout:
            failures.append(f"{address}:{port}: no answer within {timeout:g}s")
            continue
        except (dns.exception.DNSException, OSError, ValueError) as exc:
            failures.append(clip(f"{address}:{port}: {type(exc).__name__}: {exc}", 200))
            continue
        return _evidence(name, response)
    return TlsaEvidence(name, error="; ".join(failures))


def _evidence(name: str, response: object) -> TlsaEvidence:
    import dns.flags
    import dns.message
    import dns.rcode
    import dns.rdatatype

    assert isinstance(response, dns.message.Message)
    validated = bool(response.flags & dns.flags.AD)
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return TlsaEvidence(name, (), validated)
    if rcode != dns.rcode.NOERROR:
        text = dns.rcode.to_text(rcode)
        why = (
            " (a validating resolver answers so when the zone's signatures do not verify: "
            "DANE senders then defer mail to this host)"
            if rcode == dns.rcode.SERVFAIL
            else ""
        )
        return TlsaEvidence(name, error=f"the resolver answered {text}{why}")
    records: list[TlsaRecord] = []
    ttl: int | None = None
    for rrset in response.answer:
        if rrset.rdtype != dns.rdatatype.TLSA:
            continue
        ttl = rrset.ttl if ttl is None else min(ttl, rrset.ttl)
        for rdata in rrset:
            data = bytes(rdata.cert)
            if len(data) > MAX_DATA:
                continue
            records.append(TlsaRecord(rdata.usage, rdata.selector, rdata.mtype, data))
            if len(records) >= MAX_RECORDS:
                break
    return TlsaEvidence(name, tuple(records), validated, ttl=ttl)
