"""Messages at the capture listener that no outbound check took while waiting.

Only a probe's own evidence changes a verdict.  A message that carries a valid token of a
scheduled check arrived *late* for that check, or *again*: it joins that endpoint's result
(never another endpoint's, whatever address it came from; :mod:`.late`), where the verdict is
the worse of every delivery that counts, unless a newer check of the endpoint ran since (then it
is kept as superseded).  A delivery from a peer outside the endpoint's ``relay_addresses`` never
counts: it is unattributed, judged with ``capture.unlisted_peer``, and named on its check's
result when that is the newest.  Everything else (a hand test send, a stray, a forged or
expired token) is *unattributed*: judged so ``relaycert status``, the report and ``/metrics``
can show it, stored with its peer, EHLO name and certificate, and never an endpoint's result,
alert, baseline or report verdict.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from checks.base import DeliveryEvidence, Direction, worst
from checks.certinfo import fingerprint
from monitor.capture.dialogue import Capture
from monitor.capture.evidence import Delivery, RelayPeers
from monitor.capture.tokens import NO_ENDPOINT, Claim, EndpointIds, Kind, TokenKeys
from monitor.capture.waiters import Arrival
from monitor.config.common import is_host_name
from monitor.config.loader import Config
from monitor.config.sections import EndpointConfig
from monitor.pipeline import late, outbound
from monitor.results import ProbeResult, ProbeTarget, ScanRecord

if TYPE_CHECKING:
    from monitor.capture.listener import CaptureListener
    from monitor.pipeline.scan import Scanner

LATE, SUPERSEDED, TEST, UNATTRIBUTED = "late", "late, superseded", "test", "unattributed"
AGAIN = "again"  # one more delivery of a check's token, judged with its result


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
    endpoint, name = None, None
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
    if arrival.reason is not None:  # kept with its check, but it does not count
        return Attribution(UNATTRIBUTED, endpoint, arrival.reason)
    relay = RelayPeers.of(endpoint.outbound.relay_addresses)
    if relay is not None and not relay.allows(arrival.capture.peer):
        return Attribution(UNATTRIBUTED, endpoint, relay.refusal(arrival.capture.peer, name))
    return Attribution(LATE, endpoint, None)


async def handle(scanner: Scanner, arrival: Arrival, listener: CaptureListener) -> ScanRecord:
    """Judge ``arrival``; store it as its endpoint's result only when it is a probe of that
    endpoint's own newest check (:func:`.late.as_result`).  Every arrival is kept as a capture
    row."""
    config, capture, claim = scanner.config, arrival.capture, arrival.claim
    found = attribute(config, listener.settings.keys, arrival)
    endpoint = found.endpoint
    mine = endpoint is not None and claim is not None and found.kind in (LATE, UNATTRIBUTED)
    delivery = Delivery(capture, found.kind == LATE, found.reason)
    if mine and not arrival.waiting:  # one its check took while waiting is in its result
        assert endpoint is not None and claim is not None
        done = await late.as_result(scanner, arrival, endpoint, claim, listener, delivery)
        if delivery.counted and done.record is not None:
            kind = AGAIN if done.joined else LATE
            await save(scanner, done.record, Attribution(kind, endpoint, None), claim, capture.at)
            return done.record
        if delivery.counted and done.superseded is not None:
            found = Attribution(SUPERSEDED, endpoint, done.superseded)
    foreign = (delivery.evidence(),) if mine and not delivery.counted else ()
    record = judge_capture(scanner, found.endpoint, capture, foreign)
    await save(scanner, record, found, claim, capture.at)
    return record


def judge_capture(
    scanner: Scanner,
    endpoint: EndpointConfig | None,
    capture: Capture,
    deliveries: tuple[DeliveryEvidence, ...] = (),
) -> ScanRecord:
    """A capture judged as a client certificate, against ``endpoint``'s connector (or, for no
    endpoint, the only connector when there is exactly one), with ``deliveries`` for the
    capture rules: for showing, never storing."""
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
    result = ProbeResult(target, capture.at, deliveries=deliveries)
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
    attributed = found.kind in (LATE, SUPERSEDED, AGAIN) and found.endpoint is not None
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
