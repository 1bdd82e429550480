"""Messages at the capture listener that no outbound check was waiting for.

Only a probe's own evidence changes a verdict.  A message that carries a valid token of a
scheduled check arrived *late* for that check: it becomes that endpoint's outbound result (never
another endpoint's, whatever address it came from), unless a newer probe of the endpoint has
already arrived (then it is kept as superseded).  Everything else (a hand test send, a stray, a
forged, expired or replayed token) is *unattributed*: judged so ``relaycert status``, the report
and ``/metrics`` can show it, stored with its peer, EHLO name and certificate, and never an
endpoint's result, alert, baseline or report verdict.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from checks.base import Direction, worst
from checks.certinfo import fingerprint
from monitor.capture.dialogue import Capture
from monitor.capture.tokens import NO_ENDPOINT, Claim, EndpointIds, Kind, TokenKeys
from monitor.capture.waiters import Arrival
from monitor.config.common import is_host_name
from monitor.config.loader import Config
from monitor.config.sections import EndpointConfig
from monitor.errors import ProbeError
from monitor.pipeline import outbound
from monitor.results import ProbeResult, ProbeTarget, ScanRecord

if TYPE_CHECKING:
    from monitor.capture.submission import OutboundCheck
    from monitor.pipeline.scan import Scanner

LATE, SUPERSEDED, TEST, UNATTRIBUTED = "late", "late, superseded", "test", "unattributed"


@dataclass(frozen=True)
class Attribution:
    """What an arrival counts as: ``kind`` (late, late superseded, test, unattributed), the
    endpoint its token names (``None`` when none does) and why it is not a result."""

    kind: str
    endpoint: EndpointConfig | None
    reason: str | None


def attribute(config: Config, keys: TokenKeys, arrival: Arrival) -> Attribution:
    """Who ``arrival`` belongs to, by its token alone (never by peer address or EHLO name)."""
    claim = arrival.claim
    if claim is None:
        return Attribution(UNATTRIBUTED, None, arrival.reason)
    endpoint = None
    if claim.endpoint_id != NO_ENDPOINT:
        name = EndpointIds(keys, (e.name for e in config.endpoints)).name(claim.endpoint_id)
        endpoint = next((e for e in config.endpoints if e.name == name), None)
        if endpoint is None:
            why = (
                "the token names no configured endpoint (removed or renamed?), or two "
                "endpoints' names share its id"
            )
            return Attribution(UNATTRIBUTED, None, why)
    if claim.kind is Kind.TEST:
        return Attribution(TEST, endpoint, "a hand test send (relaycert capture --once)")
    if endpoint is None or endpoint.outbound is None:
        why = "the token's endpoint has no outbound check configured now"
        return Attribution(UNATTRIBUTED, None, why)
    return Attribution(LATE, endpoint, None)


async def handle(scanner: Scanner, arrival: Arrival, keys: TokenKeys) -> ScanRecord:
    """Judge ``arrival``; store it as its endpoint's result only when it is a late probe of
    that endpoint's own check.  Every arrival is kept as a capture row."""
    config, capture, claim = scanner.config, arrival.capture, arrival.claim
    found = attribute(config, keys, arrival)
    store = await scanner.ready_store()
    endpoint = found.endpoint
    if found.kind == LATE and endpoint is not None and claim is not None:
        from monitor.store.reads.outbound import outbound_state

        address, arrived, checked = await asyncio.to_thread(outbound_state, store, endpoint.name)
        # Token times are whole seconds; a result's time is its check's, a fraction later.
        if arrived is not None and arrived >= claim.issued:
            reason = (
                f"a probe of {endpoint.name} arrived at or after its check ({arrived:%H:%M:%S})"
            )
            found = Attribution(SUPERSEDED, endpoint, reason)
        elif checked is not None and checked >= claim.issued + timedelta(seconds=1):
            reason = f"a newer check of {endpoint.name} ran since ({checked:%X})"
            found = Attribution(SUPERSEDED, endpoint, reason)
        else:
            check = outbound.check_of(config, endpoint)
            address = address or await _submit_address(check)
            result = outbound.late_result(check, address, capture, claim)
            record = (await scanner.judge_and_store([result], capture.at))[0]
            await save(scanner, record, found, claim, capture.at)
            return record
    record = judge_capture(scanner, found.endpoint, capture)
    await save(scanner, record, found, claim, capture.at)
    return record


async def _submit_address(check: OutboundCheck) -> str:
    """The address ``check`` submits to, when no result of its endpoint is stored yet."""
    from monitor.capture.submission import submit_address

    try:
        return await submit_address(check)
    except ProbeError:
        return ""


def judge_capture(
    scanner: Scanner, endpoint: EndpointConfig | None, capture: Capture
) -> ScanRecord:
    """A capture judged as a client certificate, against ``endpoint``'s connector (or, for no
    endpoint, the only connector when there is exactly one): for showing, never storing."""
    config = scanner.config
    judged_as = endpoint or stand_in(config, capture)
    target = ProbeTarget(
        endpoint=judged_as.name,
        host=judged_as.host,
        port=0,
        address=capture.peer,
        mode="outbound",
        ehlo_name=config.probe.ehlo_name,
        timeout=0.0,
        direction=Direction.TO_EXO,
    )
    result = ProbeResult(target, capture.at)
    outbound.arrived(result, capture)
    return scanner.judge(capture.at).judge(result, judged_as)


def stand_in(config: Config, capture: Capture) -> EndpointConfig:
    """A stand-in endpoint for a capture no token attributes: judged against the connector when
    there is exactly one (otherwise no connector rule can say which applies)."""
    connector = config.connectors[0].name if len(config.connectors) == 1 else None
    ehlo = capture.ehlo or ""
    host = ehlo if is_host_name(ehlo) else "unattributed.invalid"
    return EndpointConfig(name="(unattributed)", host=host, connector=connector)


async def save(
    scanner: Scanner, record: ScanRecord, found: Attribution, claim: Claim | None, at: datetime
) -> None:
    """Keep the capture (its session and verdict, never a body) for status and the report."""
    store = await scanner.ready_store()
    if store is None:
        return
    from monitor.store import captures

    result = record.result
    worst_finding = worst(f.severity for f in record.findings)
    session = {
        **(result.session or {}),
        "kind": found.kind,
        "reason": found.reason,
        "for_endpoint": found.endpoint.name if found.endpoint else None,
        "issued": claim.issued.isoformat() if claim else None,
        "findings": [f"{f.severity.value} {f.rule}: {f.message}" for f in record.findings],
    }
    attributed = found.kind in (LATE, SUPERSEDED) and found.endpoint is not None
    await asyncio.to_thread(
        captures.save,
        store,
        session,
        at=at,
        endpoint=found.endpoint.name if attributed and found.endpoint else None,
        tls_version=result.tls_version,
        leaf_sha256=fingerprint(record.chain[0]) if record.chain else None,
        worst=worst_finding.value if worst_finding else None,
    )
