"""An outbound check's result made of every delivery of its token, never of the first alone.

:func:`fill` turns a check's deliveries (:class:`~monitor.capture.evidence.Delivery`) into its
:class:`~monitor.results.ProbeResult`: the first delivery that counts, the others that count as
``rivals`` (the judge keeps the worse of them all, :meth:`monitor.pipeline.judge.Judge.judge`),
and every delivery, counted or not, as the evidence the capture rules name
(``capture.token_reused``, ``capture.unlisted_peer``) and as ``session["deliveries"]`` in the
store.  :func:`with_delivery` adds one more delivery to a result rebuilt from the store (a
replay after a restart), so a stored verdict can get worse, never better.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from checks.base import DeliveryEvidence, ProbeStatus
from monitor.capture.dialogue import Capture
from monitor.capture.evidence import Delivery
from monitor.results import ProbeResult


def summary(evidence: DeliveryEvidence, why: str | None = None) -> dict[str, Any]:
    """One delivery as stored in a result's session (and shown by ``--format json``)."""
    return {
        "peer": evidence.peer,
        "ehlo": evidence.ehlo,
        "tls_version": evidence.tls_version,
        "leaf_sha256": evidence.leaf_sha256,
        "leaf_subject": evidence.leaf_subject,
        "at": evidence.at.isoformat(),
        "counted": evidence.counted,
        "why": why,
    }


def evidence_of(session: dict[str, Any] | None) -> tuple[DeliveryEvidence, ...]:
    """The deliveries a stored session lists (none for a row stored before they were kept)."""
    found = []
    for item in (session or {}).get("deliveries") or ():
        try:
            found.append(
                DeliveryEvidence(
                    peer=str(item["peer"]),
                    ehlo=item.get("ehlo"),
                    tls_version=item.get("tls_version"),
                    leaf_sha256=item.get("leaf_sha256"),
                    leaf_subject=item.get("leaf_subject"),
                    at=datetime.fromisoformat(str(item["at"])),
                    counted=bool(item.get("counted", True)),
                )
            )
        except (KeyError, TypeError, ValueError):  # a row edited by hand: skip, never fail
            continue
    return tuple(found)


def arrived(result: ProbeResult, capture: Capture) -> None:
    """Fill ``result`` from what arrived: the chain, or which of TLS and certificate was not."""
    result.session = capture.summary()
    result.tls_version, result.cipher = capture.tls_version, capture.cipher
    result.chain_der = capture.chain_der
    if capture.chain_der:
        result.status = ProbeStatus.OK
    elif capture.tls:
        result.status = ProbeStatus.NO_CLIENT_CERT
    else:
        result.status = ProbeStatus.NO_TLS


def fill(
    result: ProbeResult,
    deliveries: Sequence[Delivery],
    token: str,
    issued: datetime,
    *,
    late: bool = False,
) -> None:
    """Make ``result`` (the check of ``token``, issued at ``issued``) what ``deliveries`` show.
    With none that counts it stays what it is (a miss), naming those that did not; ``late``:
    the first that counts arrived after the check stopped waiting."""
    counted = [d for d in deliveries if d.counted]
    evidence = tuple(d.evidence() for d in deliveries)
    extra: dict[str, Any] = {
        "token": token,
        "issued": issued.isoformat(),
        "deliveries": [summary(e, d.why) for e, d in zip(evidence, deliveries, strict=True)],
    }
    result.deliveries, result.rivals = evidence, ()
    if not counted:
        result.session = {**(result.session or {}), **extra}
        return
    if late:
        first = counted[0].capture.at
        extra |= {"late": True, "late_by_s": round((first - issued).total_seconds(), 1)}
    result.failed_step = result.error = None
    _take(result, counted[0].capture, extra)
    result.rivals = tuple(_take(replace(result, rivals=()), d.capture, extra) for d in counted[1:])


def _take(result: ProbeResult, capture: Capture, extra: dict[str, Any]) -> ProbeResult:
    arrived(result, capture)
    result.session = {**(result.session or {}), **extra}
    return result


def with_delivery(stored: ProbeResult, delivery: Delivery) -> ProbeResult:
    """``stored`` (a check's result as the store has it) with one more delivery of its token:
    the worse of the two is the judge's to find when it counts.  Deliveries the stored row
    does not list (one stored before they were kept) are named from its session."""
    prior = stored.deliveries or _from_row(stored)
    new = delivery.evidence()
    whys = [d.get("why") for d in (stored.session or {}).get("deliveries") or ()]
    whys = (whys + [None] * len(prior))[: len(prior)]
    listed = [summary(e, w) for e, w in zip(prior, whys, strict=True)]
    session = {**(stored.session or {}), "deliveries": [*listed, summary(new, delivery.why)]}
    stored.session, stored.deliveries = session, (*prior, new)
    stored.rivals = ()
    if delivery.counted:
        extra = {k: v for k, v in session.items() if k in ("token", "issued", "deliveries")}
        extra |= {k: v for k, v in session.items() if k in ("late", "late_by_s")}
        stored.rivals = (_take(replace(stored, rivals=()), delivery.capture, extra),)
    return stored


def _from_row(result: ProbeResult) -> tuple[DeliveryEvidence, ...]:
    """The one delivery a row stored without a deliveries list records."""
    session = result.session or {}
    if result.status not in (ProbeStatus.OK, ProbeStatus.NO_CLIENT_CERT, ProbeStatus.NO_TLS):
        return ()
    leaf = result.chain_der[0] if result.chain_der else None
    at = session.get("at")
    return (
        DeliveryEvidence(
            peer=str(session.get("peer", "")),
            ehlo=session.get("ehlo"),
            tls_version=(result.tls_version or "TLS") if session.get("tls") else None,
            leaf_sha256=hashlib.sha256(leaf).hexdigest() if leaf else None,
            leaf_subject=None,
            at=datetime.fromisoformat(at) if isinstance(at, str) else result.started_at,
        ),
    )
