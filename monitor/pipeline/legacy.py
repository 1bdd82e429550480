"""Which legacy TLS versions (1.0, 1.1) each TLS 1.2+ address also accepts, for
``tls.legacy_accepted``: one more handshake per address at most every ``[probe]
legacy_tls_every``, remembered between a daemon's scans."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from checks.base import ProbeStatus
from monitor.probe.bounded import HostLimits
from monitor.probe.legacy import LEGACY, accepted_legacy
from monitor.results import ProbeResult, ProbeTarget

Known = dict[tuple[str, int, str], tuple[float, tuple[str, ...]]]


async def legacy_versions(
    results: list[ProbeResult],
    known: Known,
    every: timedelta,
    semaphore: asyncio.Semaphore,
    hosts: HostLimits,
) -> None:
    """Set ``legacy_versions`` on each result that reached TLS 1.2 or newer: from ``known``
    when checked within ``every``, else by one more handshake (within the scan's bounds)."""
    seconds = every.total_seconds()
    if seconds <= 0:
        return
    now = time.monotonic()
    due: list[ProbeResult] = []
    for result in results:
        if result.status is not ProbeStatus.OK or result.tls_version in LEGACY:
            continue
        seen = known.get(_key(result.target))
        if seen is not None and now - seen[0] < seconds:
            result.legacy_versions = seen[1]
        else:
            due.append(result)

    async def check(result: ProbeResult) -> None:
        async with semaphore, hosts(result.target.address):
            versions = await accepted_legacy(result.target)
        known[_key(result.target)] = (time.monotonic(), versions)
        result.legacy_versions = versions

    await asyncio.gather(*(check(r) for r in due))


def _key(target: ProbeTarget) -> tuple[str, int, str]:
    return (target.address, target.port, target.mode)
