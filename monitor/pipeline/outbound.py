"""The outbound half of a scan: run each endpoint's outbound check at the capture listener, count
consecutive misses, and judge passive captures (messages no check was waiting for).

Results are :class:`~monitor.probe.result.ProbeResult` with direction ``to_exchange_online``, so
they are judged, stored, alerted and reported by the same pipeline as the listener probes.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from checks.base import Direction, ProbeStatus
from monitor.config.loader import Config
from monitor.config.sections import EndpointConfig
from monitor.errors import ProbeError, RelaycertError
from monitor.probe.result import ProbeResult, ProbeTarget

if TYPE_CHECKING:  # loaded when an outbound check runs (pyOpenSSL, the store)
    from monitor.capture.dialogue import Capture
    from monitor.capture.listener import CaptureListener
    from monitor.store.engine import Store


def _failed(
    config: Config, endpoint: EndpointConfig, step: str, error: str, address: str = ""
) -> ProbeResult:
    from monitor.capture.outbound import outbound_target

    target = outbound_target(config, endpoint, address)
    return ProbeResult(
        target, datetime.now(UTC), ProbeStatus.UNREACHABLE, failed_step=step, error=error
    )


async def check_endpoint(
    config: Config,
    endpoint: EndpointConfig,
    listener: CaptureListener | None,
    semaphore: asyncio.Semaphore,
    unavailable: str | None = None,
) -> ProbeResult:
    """One endpoint's outbound check; never raises for what a server does."""
    from monitor.capture.outbound import check, submission, submit_address

    if listener is None:
        why = unavailable or "no capture listener is running (configure [capture])"
        return _failed(config, endpoint, "capture", why)
    try:
        address = await submit_address(config, endpoint)
    except ProbeError as exc:
        return _failed(config, endpoint, exc.step, exc.detail)
    try:
        sub = submission(config, endpoint, address)
    except RelaycertError as exc:  # a secret that cannot be read
        return _failed(config, endpoint, "auth", str(exc), address)
    return await check(sub, listener, semaphore)


async def check_all(
    config: Config,
    endpoints: Sequence[EndpointConfig],
    listener: CaptureListener | None,
    semaphore: asyncio.Semaphore,
    unavailable: str | None = None,
) -> list[ProbeResult]:
    wanted = [e for e in endpoints if e.outbound is not None]
    return list(
        await asyncio.gather(
            *(check_endpoint(config, e, listener, semaphore, unavailable) for e in wanted)
        )
    )


def count_misses(store: Store | None, results: Sequence[ProbeResult], limit: int) -> None:
    """Set ``misses`` on every not-delivered result: this miss and the consecutive ones before
    it (stored rows count their repeats), up to ``limit``."""
    missed = [r for r in results if r.status is ProbeStatus.NOT_DELIVERED]
    if not missed:
        return
    from monitor.store import queries

    before = queries.outbound_misses(store, [r.target.endpoint for r in missed], limit)
    for result in missed:
        result.misses = min(before.get(result.target.endpoint, 0) + 1, limit)


# -- passive captures ---------------------------------------------------------------------------


def match(config: Config, capture: Capture, seen: Mapping[str, set[str]]) -> EndpointConfig | None:
    """The endpoint a passive capture came from: by peer address (configured ``addresses``, or
    addresses the endpoint was probed at, ``seen``), else by EHLO name equal to its host."""
    peer = _normal(capture.peer)
    for endpoint in config.endpoints:
        known = set(endpoint.addresses or ()) | seen.get(endpoint.name, set())
        if peer in {_normal(a) for a in known}:
            return endpoint
    ehlo = (capture.ehlo or "").lower().rstrip(".")
    for endpoint in config.endpoints:
        if ehlo and ehlo in (endpoint.host.lower(), (endpoint.ehlo_name or "").lower()):
            return endpoint
    return None


def _normal(address: str) -> str:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    mapped = getattr(parsed, "ipv4_mapped", None)
    return str(mapped or parsed)


def passive_result(
    config: Config, endpoint: EndpointConfig | None, capture: Capture
) -> ProbeResult:
    """A passive capture as an outbound result (of ``endpoint``, or of no endpoint)."""
    from monitor.capture.outbound import arrived

    name = endpoint.name if endpoint else "(unmatched)"
    host = endpoint.host if endpoint else (capture.ehlo or capture.peer)
    target = ProbeTarget(
        endpoint=name,
        host=host,
        port=0,
        address=capture.peer,
        mode="outbound",
        ehlo_name=config.probe.ehlo_name,
        timeout=0.0,
        direction=Direction.TO_EXO,
    )
    result = ProbeResult(target, capture.at)
    arrived(result, capture)
    result.session = {**(result.session or {}), "passive": True}
    return result
