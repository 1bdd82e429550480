"""The outbound half of a scan: run each endpoint's outbound check at the capture listener, count
consecutive misses, and turn attempts and late arrivals into results.

Results are :class:`~monitor.results.ProbeResult` with direction ``to_exchange_online``, so
they are judged, stored, alerted and reported by the same pipeline as the listener probes.  Only
a probe's own evidence becomes a result: every delivery of its signed token, on time or late
(:func:`late_result`), the worse of those that count being the verdict
(:mod:`.deliveries`).  A message without a valid token never does (see
:mod:`monitor.pipeline.arrivals`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from checks.base import Direction, ProbeStatus
from monitor.clock import Clock, utcnow
from monitor.config.loader import Config
from monitor.config.sections import EndpointConfig
from monitor.pipeline.deliveries import arrived as arrived
from monitor.pipeline.deliveries import fill
from monitor.results import ProbeResult

if TYPE_CHECKING:  # loaded when an outbound check runs (pyOpenSSL, the store)
    from monitor.capture.evidence import Delivery
    from monitor.capture.listener import CaptureListener
    from monitor.capture.outbound import Attempt
    from monitor.capture.submission import OutboundCheck
    from monitor.capture.tokens import Claim
    from monitor.store.engine import Store


def check_of(config: Config, endpoint: EndpointConfig) -> OutboundCheck:
    """What ``endpoint``'s outbound check needs from ``config``, resolved once."""
    from monitor.capture.submission import OutboundCheck

    outbound, capture = endpoint.outbound, config.capture
    assert outbound is not None and capture is not None
    return OutboundCheck(
        endpoint=endpoint.name,
        host=endpoint.host,
        addresses=tuple(endpoint.addresses or ()),
        outbound=config.resolved(outbound),
        ehlo_name=endpoint.ehlo_name or config.probe.ehlo_name,
        timeout=config.endpoint_timeout(endpoint).total_seconds(),
        probe_domain=config.probe_domain(endpoint),
        wait=capture.wait.total_seconds(),
        nameservers=config.dns.servers(),
        source=config.source,
        linger=min(capture.linger, capture.wait).total_seconds(),
    )


async def check_endpoint(
    config: Config,
    endpoint: EndpointConfig,
    listener: CaptureListener | None,
    semaphore: asyncio.Semaphore,
    unavailable: str | None = None,
    clock: Clock = utcnow,
) -> ProbeResult:
    """One endpoint's outbound check; never raises for what a server does."""
    from monitor.capture.outbound import attempt
    from monitor.capture.submission import NotSubmitted, prepare

    check = check_of(config, endpoint)
    if listener is None:
        why = unavailable or "no capture listener is running (configure [capture])"
        return ProbeResult(
            check.target(""),
            clock(),
            ProbeStatus.UNREACHABLE,
            failed_step="capture",
            error=why,
            local=True,
        )
    sub = await prepare(check)
    if isinstance(sub, NotSubmitted):
        return ProbeResult(
            sub.target,
            clock(),
            ProbeStatus.UNREACHABLE,
            failed_step=sub.step,
            error=sub.error,
        )
    return result_of(await attempt(sub, listener, semaphore, clock))


async def check_all(
    config: Config,
    endpoints: Sequence[EndpointConfig],
    listener: CaptureListener | None,
    semaphore: asyncio.Semaphore,
    unavailable: str | None = None,
    clock: Clock = utcnow,
) -> list[ProbeResult]:
    wanted = [e for e in endpoints if e.outbound is not None]
    results = list(
        await asyncio.gather(
            *(check_endpoint(config, e, listener, semaphore, unavailable, clock) for e in wanted)
        )
    )
    if listener is not None:
        settle(results, listener)
    return results


def settle(results: Sequence[ProbeResult], listener: CaptureListener) -> None:
    """Every delivery of a check's token that arrived since the check stopped waiting (while
    the other checks still ran) joins its result before it is judged: a check that gave up
    just before its probe arrived takes it, marked late, instead of storing a miss on top of
    its own evidence; one whose token arrived again judges both (the worse counts)."""
    for result in results:
        token = (result.session or {}).get("token")
        if not token or result.target.direction is not Direction.TO_EXO:
            continue
        more = listener.settle(str(token))
        if more is None:
            continue
        late = result.status is ProbeStatus.NOT_DELIVERED or bool(
            (result.session or {}).get("late")
        )
        fill(result, more, str(token), result.started_at, late=late)


def result_of(attempt: Attempt) -> ProbeResult:
    """What one attempt measured: unreachable (the submission failed), not delivered (nothing
    that counts arrived within the wait), or every delivery of its token."""
    sub = attempt.submission
    result = ProbeResult(sub.target, attempt.issued, banner=attempt.banner)
    result.timings.update(attempt.timings)
    if attempt.error is not None:
        result.status = ProbeStatus.UNREACHABLE
        result.failed_step, result.error = attempt.error.step, attempt.error.detail
        return result
    result.status, result.failed_step = ProbeStatus.NOT_DELIVERED, "delivery"
    result.error = f"nothing arrived within {sub.check.wait:g}s"
    if attempt.deliveries and not any(d.counted for d in attempt.deliveries):
        result.error = f"nothing from relay_addresses arrived within {sub.check.wait:g}s"
    late = attempt.capture is None  # it arrived as the wait ended
    fill(result, attempt.deliveries, attempt.token, attempt.issued, late=late)
    return result


def late_result(
    check: OutboundCheck, address: str, deliveries: Sequence[Delivery], claim: Claim
) -> ProbeResult:
    """A probe message that arrived after its check stopped waiting, as that endpoint's own
    outbound result (keyed by ``address``, the address its checks submit to), marked late,
    with every delivery of its token known (``deliveries``)."""
    result = ProbeResult(check.target(address), claim.issued, ProbeStatus.NOT_DELIVERED)
    fill(result, deliveries, claim.token, claim.issued, late=True)
    return result


def count_misses(store: Store | None, results: Sequence[ProbeResult], limit: int) -> None:
    """Set ``misses`` on every not-delivered result: this miss and the consecutive ones before
    it (stored rows count their repeats), up to ``limit``."""
    missed = [r for r in results if r.status is ProbeStatus.NOT_DELIVERED]
    if not missed:
        return
    from monitor.store.reads.outbound import outbound_misses

    before = outbound_misses(store, [r.target.endpoint for r in missed], limit)
    for result in missed:
        result.misses = min(before.get(result.target.endpoint, 0) + 1, limit)
