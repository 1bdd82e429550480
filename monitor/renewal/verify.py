"""After a deployment: is the new certificate served by every address, does the server relay
with it (outbound checks), and does the Exchange Send connector name it?"""

from __future__ import annotations

import asyncio

from cryptography import x509

from checks.base import Severity
from checks.certinfo import fingerprint
from monitor.errors import RelaycertError
from monitor.renewal.attempt import Attempt
from monitor.renewal.context import SendConnectorCheck


async def verify_served(attempt: Attempt, chain: tuple[x509.Certificate, ...]) -> list[str]:
    """Re-probe every address until all serve ``chain``'s leaf; the addresses that still do
    not.  Once every address serves it, the renewed chain is their baseline *before* these
    probes are judged: a renewal relaycert deployed and verified is labelled a renewal, not
    drift, even when the CA issued it from another intermediate (Let's Encrypt rotates them)."""
    from monitor.store import baselines

    settings = attempt.settings
    sha256 = fingerprint(chain[0])
    endpoints = list(attempt.context.endpoints)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.verify_timeout.total_seconds()
    while True:
        stale = []
        results = await attempt.scanner.probe(endpoints)
        for result in results:
            leaf = x509.load_der_x509_certificate(result.chain_der[0]) if result.chain_der else None
            if leaf is None or fingerprint(leaf) != sha256:
                stale.append(f"{result.target.endpoint} {result.target.address or '?'}")
        if not stale:
            await asyncio.to_thread(
                baselines.accept_renewed, attempt.store, settings.endpoints, chain, attempt.clock()
            )
        if not stale or loop.time() > deadline:
            # The verification probes are observations like any other: stored, so status and
            # the next renewal decision see what is served now, not what was before.
            await attempt.scanner.judge_and_store(results, attempt.clock())
            return stale
        await asyncio.sleep(1)


async def verify_outbound(attempt: Attempt, sha256: str) -> str:
    """Re-run the outbound checks of the renewed endpoints that have one (stored and alerted as
    usual) and say whether the server now *relays* with the new certificate.  The client
    certificate is configured separately (Postfix ``smtp_tls_*``, Exchange Send connector), so
    this reports rather than fails the renewal; its own findings alert in that direction."""
    scanner = attempt.scanner
    endpoints = [e for e in attempt.context.endpoints if e.outbound]
    if not endpoints:
        return ""
    results = await scanner.outbound_checks(endpoints)  # misses counted as in a scan
    notes = []
    for record in await scanner.judge_and_store(results, attempt.clock()):
        name = record.result.target.endpoint
        if record.chain and fingerprint(record.chain[0]) == sha256:
            notes.append(f"{name} relays with the new certificate")
        elif record.chain:
            notes.append(
                f"{name} still relays with {fingerprint(record.chain[0])[:16]}... (update its "
                "client certificate setting: Postfix smtp_tls_chain_files, Exchange Send "
                "connector TlsCertificateName)"
            )
        else:
            notes.append(f"{name} outbound check: {record.result.status.value}")
    return "; outbound check: " + "; ".join(notes)


def verify_send_connector(check: SendConnectorCheck | None) -> str:
    """With ``[exchange_server]`` (``check``): the Send connector check over the exports (which
    the Exchange deploy hook refreshes), reported in the renewal's detail: after a renewal by a
    new intermediate this is where a stale ``TlsCertificateName`` shows."""
    if check is None:
        return ""
    try:
        results = check()
    except RelaycertError as exc:
        return f"; Exchange Send connector check not possible: {exc}"
    notes = []
    for send, found in results:
        serious = [f for f in found if f.severity.rank >= Severity.WARNING.rank]
        notes.append(
            f"{send.name}: " + ("; ".join(f"{f.rule}: {f.message}" for f in serious) or "ok")
        )
    return "; Exchange Send connector check: " + "; ".join(notes)
