"""Many probes at once: a shared connection bound, a per-address bound, and one retry of a
transient refusal (a busy server's 4xx greeting, a reset)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from checks.base import ProbeStatus
from monitor.clock import Clock, utcnow
from monitor.probe.smtp import probe
from monitor.results import ProbeResult, ProbeTarget

RETRY_DELAY = 1.0  # seconds before the one retry of a transient refusal


class HostLimits:
    """At most ``limit`` connections to one address at once (like an MTA's destination
    concurrency): a semaphore per address, made when the address is first probed."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._semaphores: dict[str, asyncio.Semaphore] = {}

    def __call__(self, address: str) -> asyncio.Semaphore:
        semaphore = self._semaphores.get(address)
        if semaphore is None:
            semaphore = self._semaphores[address] = asyncio.Semaphore(self.limit)
        return semaphore


def transient(result: ProbeResult) -> bool:
    """A refusal worth one retry: a 4xx greeting (busy, too many connections), whatever the
    mode (on an implicit-TLS port it comes in plain text instead of the handshake), or a
    connection the server reset or closed before the dialogue finished."""
    if result.status is not ProbeStatus.UNREACHABLE or result.error is None:
        return False
    if (result.banner or "").startswith("4"):
        return True
    return result.failed_step != "connect" and "connection closed by the server" in result.error


async def probe_one(
    target: ProbeTarget,
    semaphore: asyncio.Semaphore,
    on_start: Callable[[ProbeTarget], None] | None = None,
    per_host: Callable[[str], asyncio.Semaphore] | None = None,
    clock: Clock = utcnow,
) -> ProbeResult:
    """Probe ``target`` holding ``semaphore`` (and its address's ``per_host`` semaphore) while
    connected.  A transient refusal is retried once after :data:`RETRY_DELAY`, permits
    released while waiting.  ``on_start`` is called as the probe starts; ``clock`` dates the
    result."""

    async def once(first: bool) -> ProbeResult:
        host = per_host(target.address) if per_host is not None else None
        async with semaphore:
            if host is None:
                if first and on_start is not None:
                    on_start(target)
                return await probe(target, clock)
            async with host:
                if first and on_start is not None:
                    on_start(target)
                return await probe(target, clock)

    result = await once(True)
    if transient(result):
        await asyncio.sleep(RETRY_DELAY)
        retried = await once(False)
        retried.timings["retried_after"] = result.timings.get("total", 0.0)
        return retried
    return result


async def probe_bounded(
    targets: Sequence[ProbeTarget],
    semaphore: asyncio.Semaphore,
    on_start: Callable[[ProbeTarget], None] | None = None,
    per_host: Callable[[str], asyncio.Semaphore] | None = None,
    clock: Clock = utcnow,
) -> list[ProbeResult]:
    """Probe ``targets`` (:func:`probe_one` each), so one semaphore shared by every caller
    bounds the connections in flight and no server gets more than its per-host share; results
    in target order.  ``on_start`` is called as each probe starts (the daemon measures
    scheduling lag with it); ``clock`` dates the results."""
    return list(
        await asyncio.gather(*(probe_one(t, semaphore, on_start, per_host, clock) for t in targets))
    )


async def probe_many(targets: Sequence[ProbeTarget], concurrency: int) -> list[ProbeResult]:
    """Probe ``targets`` with at most ``concurrency`` in flight; results in target order."""
    return await probe_bounded(targets, asyncio.Semaphore(concurrency))
