"""The DANE gate: a renewal never deploys a certificate that would break DANE delivery.

A host Exchange Online delivers to with DANE (its delivery connector's ``dane_mode`` is not
``None``) and that publishes DNSSEC-validated TLSA records must keep serving a chain that one of
them matches.  A renewal with a new key, before a record for that key was published and had
time to reach every resolver (two TTLs, RFC 7671 section 8.1), stops delivery to it.  So after
the usual gate, and before anything is deployed, the new chain is matched against each such
host's records, and the renewal is refused (``dane.rollover_unsafe``) when:

- no record matches the new chain: the message gives the ``3 1 1`` record to publish;
- the records cannot be read (a failed lookup is not an "ok").

and it waits (skipped, the issued certificate kept for the next attempt) when a record
matches but is new: it matches neither the certificate served now nor was it first seen by
relaycert two TTLs ago (first sightings are kept in ``dane-seen.json`` in the renewal's state
directory).

Two ways keep unattended renewal DANE-safe: ``reuse_key`` (the key, and so a ``3 1 1`` record,
never changes), or the next-key flow: ``relaycert renew --next-key`` makes the next key now and
prints its TLSA record to publish beside the current one; the next renewal orders with that key
and deploys once the record has been visible for two TTLs; the old record can go afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)

from checks.base import Finding, Severity, TlsaEvidence
from checks.dane import USABLE, associated, matches, publishable
from monitor.files import read_limited, write_secret
from monitor.probe.dane import lookup, tlsa_name
from monitor.renewal.attempt import Attempt
from monitor.renewal.context import RenewalContext

RULE = "dane.rollover_unsafe"
SEEN = "dane-seen.json"
NEXT_KEY = "next-key.pem"
DEFAULT_TTL = 3600  # seconds, when an answer carries none


def _seen_path(attempt: Attempt) -> Path:
    return attempt.settings.state_dir / attempt.settings.name / SEEN


def _load_seen(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _save_seen(path: Path, seen: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(seen, indent=2, sort_keys=True))
    os.replace(temporary, path)


def _refuse(message: str) -> Finding:
    return Finding(RULE, Severity.CRITICAL, message)


@dataclass(frozen=True)
class Verdict:
    """Why deploying would break DANE delivery (``refused``), or from when it will not
    (``ready``, a record just published); neither: deploy."""

    refused: list[Finding] = field(default_factory=list)
    ready: datetime | None = None
    waiting: list[str] = field(default_factory=list)


async def check(
    attempt: Attempt, chain: tuple[x509.Certificate, ...], current: x509.Certificate | None
) -> Verdict:
    """Whether ``chain`` may be deployed without breaking DANE delivery."""
    context = attempt.context
    hosts = context.dane_hosts
    if not hosts:
        return Verdict()
    timeout, servers = context.lookup_timeout, context.nameservers
    found = await asyncio.gather(*(lookup(host, timeout, servers) for host in hosts))
    path = _seen_path(attempt)
    seen = await asyncio.to_thread(_load_seen, path)
    now = attempt.clock()
    verdict = Verdict()
    ready: list[datetime] = []
    for host, evidence in zip(hosts, found, strict=True):
        problem = _judge(host, evidence, chain, current, seen, now)
        if isinstance(problem, str):
            verdict.refused.append(_refuse(problem))
        elif problem is not None:
            ready.append(problem)
            verdict.waiting.append(
                f"{host}: the TLSA record for the new certificate was first seen less than "
                "two TTLs ago (resolvers may still hold the old answer)"
            )
    await asyncio.to_thread(_save_seen, path, seen)
    return Verdict(verdict.refused, max(ready) if ready else None, verdict.waiting)


def _judge(
    host: str,
    evidence: TlsaEvidence,
    chain: tuple[x509.Certificate, ...],
    current: x509.Certificate | None,
    seen: dict[str, str],
    now: datetime,
) -> str | datetime | None:
    """Why not (a message), from when (a record just published), or ``None``: fine."""
    if evidence.error is not None:
        return (
            f"{host}: its TLSA records at {evidence.name} cannot be read ({evidence.error}); "
            "a new certificate is not deployed without knowing that DANE senders accept it"
        )
    usable = [r for r in evidence.records if r.usage in USABLE]
    if not evidence.validated or not usable:
        return None  # no DANE pin on this host: nothing to break
    matching = [r for r in usable if matches(r, chain, host)]
    if not matching:
        return (
            f"{host}: the new certificate matches none of the validated TLSA records at "
            f"{evidence.name}; deploying it would stop Exchange Online's delivery to it. "
            f"Publish `{evidence.name} IN TLSA {publishable(chain)}` beside the current "
            "record and renew again two TTLs later, or renew with reuse_key, or stage the "
            "next key first (`relaycert renew --next-key`)"
        )
    wait = timedelta(seconds=2 * (evidence.ttl or DEFAULT_TTL))
    established = False
    for record in matching:
        key = f"{host} {record.text()}"
        first = seen.setdefault(key, now.isoformat())
        in_use = current is not None and record.usage == 3 and associated(current, record)
        if in_use or datetime.fromisoformat(first) + wait <= now:
            established = True
    if established:
        return None
    return min(datetime.fromisoformat(seen[f"{host} {r.text()}"]) for r in matching) + wait


def stage_next_key(context: RenewalContext) -> tuple[Path, list[str], bool]:
    """Make the renewal's next key (kept if already made, mode 0600): its path, the ``3 1 1``
    records to publish for it at every host of the renewal, and whether it was made now."""
    from monitor.renewal.acme_flow import new_private_key

    settings = context.settings
    path = settings.state_dir / settings.name / NEXT_KEY
    made = not path.exists()
    if made:
        write_secret(path, new_private_key(settings.key_type))
    key = load_pem_private_key(read_limited(path), password=None)
    spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    digest = hashlib.sha256(spki).hexdigest()
    hosts = sorted({e.host.lower().rstrip(".") for e in context.endpoints})
    return path, [f"{tlsa_name(host)} IN TLSA 3 1 1 {digest}" for host in hosts], made
