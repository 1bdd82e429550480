"""The revocation evidence of a scan's results: each leaf's CRL verdict set on its result
before the rules judge it (``cert.revoked``, ``cert.revocation_unknown``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from cryptography import x509

from checks.base import RevocationEvidence
from monitor.clock import Clock, utcnow
from monitor.config.loader import Config
from monitor.pipeline.contained import lookup_failed
from monitor.probe.crl import CrlCache, CrlSettings, distribution_points
from monitor.results import ProbeResult


def crl_cache(config: Config, clock: Clock = utcnow) -> CrlCache:
    """One cache for a scanner's life: every endpoint with one issuer shares its CRL."""
    crl = config.revocation
    refresh = crl.refresh.total_seconds() if crl.refresh else None
    timeout = crl.timeout.total_seconds()
    return CrlCache(CrlSettings(crl.enabled, timeout, crl.max_size, crl.proxy, refresh), clock)


async def attach(
    crls: CrlCache,
    parse: Callable[[tuple[bytes, ...]], tuple[x509.Certificate, ...]],
    results: Sequence[ProbeResult],
) -> None:
    """Set ``result.revocation`` for each result whose leaf names a CRL, concurrently: one
    fetch per distribution point and issuer, the rest from the cache; no task for the rest."""
    checked = []
    for result in results:
        if result.chain_der and result.revocation is None:
            chain = parse(result.chain_der)
            if distribution_points(chain[0]):
                checked.append((result, chain))

    async def one(result: ProbeResult, chain: tuple[x509.Certificate, ...]) -> None:
        try:
            result.revocation = await crls.check(chain)
        except Exception as exc:  # a defect of relaycert's own: this result's, nobody else's
            result.revocation = RevocationEvidence(
                "unknown",
                distribution_points(chain[0])[0],
                error=lookup_failed("revocation check", exc),
                unknown_since=crls.clock(),
            )

    if checked:
        await asyncio.gather(*(one(r, c) for r, c in checked))
