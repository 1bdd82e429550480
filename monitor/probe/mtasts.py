"""MX routes and MTA-STS policies (RFC 8461) of the recipient domains Exchange Online delivers
to by MX (an outbound connector with ``use_mx_record``).

For each domain: its MX hosts; the ``_mta-sts.<domain>`` TXT record; when it says ``v=STSv1``,
the policy at ``https://mta-sts.<domain>/.well-known/mta-sts.txt``.  Every name, the policy
host included, is resolved through ``[dns] nameservers`` when set; the HTTPS connection goes to
the address found, with the policy host as SNI and ``Host``, verified against the same trust
anchors as everything else relaycert judges, through :mod:`.fetch` (its bounds: the head, a
body of 64 KiB, identity encoding only, no redirect, RFC 8461 section 3.3); the DNS steps and
the fetch are each bounded by the timeout.  A failure is evidence of
nothing: the rules call it ``mtasts.policy_unreachable``, never "no policy".
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from functools import lru_cache

from checks.base import MtaStsEvidence, TrustAnchors
from checks.certinfo import clip
from monitor.errors import ProbeError
from monitor.probe.fetch import FetchError, fetch
from monitor.probe.resolve import resolve

MAX_POLICY = 65_536
PATH = "/.well-known/mta-sts.txt"


async def _records(
    name: str, rdtype: str, timeout: float, nameservers: Sequence[tuple[str, int]]
) -> list[object]:
    """The records of ``name`` (none for NXDOMAIN or no answer).  In a thread with dnspython's
    blocking resolver, so DNS goes through Python's sockets whatever the event loop."""
    return await asyncio.to_thread(_records_now, name, rdtype, timeout, tuple(nameservers))


def _records_now(
    name: str, rdtype: str, timeout: float, nameservers: tuple[tuple[str, int], ...]
) -> list[object]:
    import dns.nameserver
    import dns.resolver

    if nameservers:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(ip, port) for ip, port in nameservers]
    else:
        resolver = dns.resolver.Resolver()
    try:
        answer = resolver.resolve(name, rdtype, lifetime=timeout, search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    return list(answer)


async def mx_hosts(
    domain: str, timeout: float, nameservers: Sequence[tuple[str, int]] = ()
) -> list[str]:
    """The MX hosts of ``domain``, most preferred first (an error raises DNSException)."""
    records = await _records(domain, "MX", timeout, nameservers)
    ordered = sorted(records, key=lambda r: r.preference)  # type: ignore[attr-defined]
    return [str(r.exchange).rstrip(".").lower() for r in ordered]  # type: ignore[attr-defined]


@lru_cache(maxsize=8)  # anchors hash by identity: one context per scanner, not per policy
def _context(anchors: TrustAnchors) -> ssl.SSLContext:
    from cryptography.hazmat.primitives.serialization import Encoding

    context = ssl.create_default_context(
        cadata="".join(c.public_bytes(Encoding.PEM).decode() for c in anchors.roots) or None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _url(address: str) -> str:
    """The policy's URL at ``address`` (the host name goes in ``Host`` and SNI)."""
    return f"https://[{address}]{PATH}" if ":" in address else f"https://{address}{PATH}"


def parse(text: str) -> tuple[str, tuple[str, ...], int]:
    """(mode, mx patterns, max_age) of a policy; ValueError when it is not one."""
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), []).append(value.strip())
    if fields.get("version") != ["STSv1"]:
        raise ValueError("the policy has no 'version: STSv1' line")
    mode = (fields.get("mode") or [""])[0].lower()
    if mode not in ("enforce", "testing", "none"):
        raise ValueError(f"the policy's mode {clip(mode, 40)!r} is none of enforce, testing, none")
    ages = fields.get("max_age") or []
    if len(ages) != 1 or not ages[0].isdigit():
        raise ValueError("the policy has no valid max_age")
    mx = tuple(m.lower().rstrip(".") for m in fields.get("mx", []))
    if mode != "none" and not mx:
        raise ValueError("the policy names no mx")
    return mode, mx, int(ages[0])


async def policy(
    domain: str,
    timeout: float,
    anchors: TrustAnchors,
    nameservers: Sequence[tuple[str, int]] = (),
) -> MtaStsEvidence:
    """The MTA-STS policy of ``domain`` (``present`` False when it publishes none)."""
    import dns.exception

    host = f"mta-sts.{domain}"
    try:
        async with asyncio.timeout(timeout * 2):
            texts = await _records(f"_mta-sts.{domain}", "TXT", timeout, nameservers)
            ids = [
                b"".join(r.strings).decode("utf-8", "replace")  # type: ignore[attr-defined]
                for r in texts
            ]
            ids = [t for t in ids if t.replace(" ", "").startswith("v=STSv1")]
            if not ids:
                return MtaStsEvidence(domain, present=False)
            addresses = await resolve(host, 443, timeout, nameservers)
    except TimeoutError:
        return MtaStsEvidence(domain, error=f"no DNS answer within {timeout * 2:g}s")
    except (dns.exception.DNSException, ProbeError, OSError, ValueError) as exc:
        return MtaStsEvidence(domain, error=clip(f"{type(exc).__name__}: {exc}", 300))
    try:
        got = await fetch(
            _url(addresses[0]),
            timeout=timeout,
            max_size=MAX_POLICY,
            verify=_context(anchors),
            host=host,
            accept="text/plain",
        )
    except FetchError as exc:
        return MtaStsEvidence(domain, error=clip(f"https://{host}{PATH}: {exc}", 300))
    status, kind, body = got.status, got.content_type, got.body
    if status != 200:
        why = " (RFC 8461: a redirect is not followed)" if 300 <= status < 400 else ""
        return MtaStsEvidence(domain, error=f"https://{host}{PATH} answered {status}{why}")
    if not kind.lower().startswith("text/plain"):
        return MtaStsEvidence(domain, error=f"the policy is {clip(kind, 60)!r}, not text/plain")
    try:
        mode, mx, max_age = parse(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return MtaStsEvidence(domain, error=clip(str(exc), 300))
    return MtaStsEvidence(domain, present=True, mode=mode, mx=mx, max_age=max_age)
