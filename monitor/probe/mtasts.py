"""MX routes and MTA-STS policies (RFC 8461) of the recipient domains Exchange Online delivers
to by MX (an outbound connector with ``use_mx_record``).

For each domain: its MX hosts; the ``_mta-sts.<domain>`` TXT record; when it says ``v=STSv1``,
the policy at ``https://mta-sts.<domain>/.well-known/mta-sts.txt``.  Every name, the policy
host included, is resolved through ``[dns] nameservers`` when set; the HTTPS connection goes to
the address found, with the policy host as SNI and ``Host``, verified against the same trust
anchors as everything else relaycert judges; no redirect is followed (RFC 8461 section 3.3),
the body is capped at 64 KiB and every step is bounded by the timeout.  A failure is evidence of
nothing: the rules call it ``mtasts.policy_unreachable``, never "no policy".
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence

from checks.base import MtaStsEvidence, TrustAnchors
from checks.certinfo import clip
from monitor.errors import ProbeError
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


def _context(anchors: TrustAnchors) -> ssl.SSLContext:
    from cryptography.hazmat.primitives.serialization import Encoding

    context = ssl.create_default_context(
        cadata="".join(c.public_bytes(Encoding.PEM).decode() for c in anchors.roots) or None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def _fetch(
    host: str, address: str, timeout: float, anchors: TrustAnchors
) -> tuple[int, str, bytes]:
    """(status, content type, body) of GET ``PATH`` from ``host`` at ``address``:443."""
    reader, writer = await asyncio.open_connection(
        address, 443, ssl=_context(anchors), server_hostname=host
    )
    try:
        request = (
            f"GET {PATH} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: relaycert\r\n"
            "Accept: text/plain\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode("ascii"))
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > 16_384:
            raise ValueError("response headers too long")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        body = await reader.read(MAX_POLICY + 1)
        while len(body) <= MAX_POLICY:
            more = await reader.read(MAX_POLICY + 1 - len(body))
            if not more:
                break
            body += more
        if len(body) > MAX_POLICY:
            raise ValueError(f"the policy is larger than {MAX_POLICY // 1024} KiB")
        return status, headers.get("content-type", ""), body
    finally:
        writer.close()


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

    try:
        async with asyncio.timeout(timeout * 3):
            texts = await _records(f"_mta-sts.{domain}", "TXT", timeout, nameservers)
            ids = [
                b"".join(r.strings).decode("utf-8", "replace")  # type: ignore[attr-defined]
                for r in texts
            ]
            ids = [t for t in ids if t.replace(" ", "").startswith("v=STSv1")]
            if not ids:
                return MtaStsEvidence(domain, present=False)
            host = f"mta-sts.{domain}"
            addresses = await resolve(host, 443, timeout, nameservers)
            status, kind, body = await _fetch(host, addresses[0], timeout, anchors)
    except TimeoutError:
        return MtaStsEvidence(domain, error=f"no complete answer within {timeout * 3:g}s")
    except (dns.exception.DNSException, ProbeError, OSError, ssl.SSLError, ValueError) as exc:
        return MtaStsEvidence(domain, error=clip(f"{type(exc).__name__}: {exc}", 300))
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
