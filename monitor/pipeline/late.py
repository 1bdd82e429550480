"""A delivery of a check's token after the check stopped waiting, as that check's result.

Its check's own evidence decides, never the first delivery: when the endpoint's newest stored
result is this token's check, the delivery joins it (the verdict is the worse of every delivery
that counts, so a replay can make it worse, never better, and ``capture.token_reused`` or
``capture.unlisted_peer`` names them); when it is that check's miss, or nothing of it is stored,
the delivery is its late result; when a newer check ran since, it changes nothing (superseded).
A delivery of a check that ran in this process waits (bounded) for that check's own result to be
stored first, and is judged with every delivery the listener kept of it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from checks.base import ProbeStatus
from monitor.capture.evidence import Delivery
from monitor.capture.tokens import Claim
from monitor.capture.waiters import Arrival
from monitor.config.sections import EndpointConfig
from monitor.errors import ProbeError
from monitor.pipeline import outbound
from monitor.pipeline.deliveries import evidence_of, fill, with_delivery
from monitor.results import ProbeResult, ScanRecord

if TYPE_CHECKING:
    from monitor.capture.listener import CaptureListener
    from monitor.capture.submission import OutboundCheck
    from monitor.pipeline.scan import Scanner
    from monitor.store.engine import Store
    from monitor.store.reads.outbound import StoredCheck

PENDING_WAIT = 60.0  # seconds a delivery waits for its own check's result to be stored
TOKEN_TIME = timedelta(seconds=1)  # a token's issue time is whole seconds


@dataclass(frozen=True)
class Outcome:
    """What a late delivery became: its check's result (``record``; ``joined`` when it joined a
    stored one), or nothing stored, superseded (``superseded`` says by what) or not."""

    record: ScanRecord | None = None
    joined: bool = False
    superseded: str | None = None


async def as_result(
    scanner: Scanner,
    arrival: Arrival,
    endpoint: EndpointConfig,
    claim: Claim,
    listener: CaptureListener | None,
    delivery: Delivery,
) -> Outcome:
    """Store ``delivery`` (of ``arrival``, for ``endpoint``'s check of ``claim``) as that check's
    result when it still is the endpoint's newest (see the module's docstring)."""
    from monitor.store.reads.outbound import MEASURED_OUTBOUND

    store = await scanner.ready_store()
    stored = await _stored(store, endpoint.name, claim, arrival.known)
    known = listener.deliveries(claim.token) if listener is not None and arrival.known else ()
    check = outbound.check_of(scanner.config, endpoint)
    ours = stored is not None and claim.issued <= stored.checked < claim.issued + TOKEN_TIME
    if stored is not None and ours and stored.status in MEASURED_OUTBOUND:
        if known:
            result = ProbeResult(check.target(stored.address), stored.checked)
            result.status = ProbeStatus.NOT_DELIVERED  # made what its deliveries show
            fill(result, known, claim.token, stored.checked, late=_late(stored))
        else:
            result = with_delivery(_rebuilt(check, stored), delivery)
        joined = True
    elif stored is None or ours or stored.checked < claim.issued:
        if not delivery.counted:  # a miss stays a miss: its misses are counted once
            return Outcome()
        address = stored.address if stored is not None else await _submit_address(check)
        result = outbound.late_result(check, address, known or (delivery,), claim)
        joined = False
    else:
        return Outcome(
            superseded=f"a newer check of {endpoint.name} ran since ({stored.checked:%X})"
        )
    record = (await scanner.judge_and_store([result], arrival.capture.at))[0]
    return Outcome(record, joined)


async def _stored(
    store: Store | None, name: str, claim: Claim, pending: bool
) -> StoredCheck | None:
    """The endpoint's newest stored check; for a check of this process (``pending``), once its
    own result is stored (at most :data:`PENDING_WAIT`)."""
    from monitor.store.reads.outbound import newest_check

    if store is None:
        return None
    deadline = time.monotonic() + (PENDING_WAIT if pending else 0.0)
    while True:
        stored = await asyncio.to_thread(newest_check, store, name)
        if (stored is not None and stored.checked >= claim.issued) or time.monotonic() > deadline:
            return stored
        await asyncio.sleep(0.25)


def _late(stored: StoredCheck) -> bool:
    return bool(stored.session.get("late"))


def _rebuilt(check: OutboundCheck, stored: StoredCheck) -> ProbeResult:
    """The stored result as it was measured, at the time of its (newest) check."""
    return ProbeResult(
        check.target(stored.address),
        stored.checked,
        ProbeStatus(stored.status),
        tls_version=stored.tls_version,
        cipher=stored.cipher,
        chain_der=stored.chain_der,
        session=dict(stored.session),
        deliveries=evidence_of(stored.session),
    )


async def _submit_address(check: OutboundCheck) -> str:
    """The address ``check`` submits to, when no result of its endpoint is stored yet."""
    from monitor.capture.submission import submit_address

    try:
        return await submit_address(check)
    except ProbeError:
        return ""
