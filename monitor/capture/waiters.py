"""Who is waiting for which token at the capture listener, and what a message's tokens count as.

An outbound check registers its token with :meth:`Waiters.expect` (with its endpoint's
``relay_addresses``, if any) before it submits the probe message, and awaits the future: the
first delivery that counts completes it.  A message's tokens are verified
(:meth:`Waiters.claims`): only a token this installation issued that has not expired counts.
Every delivery of a valid token is kept in its :class:`~.evidence.Evidence` (never refused as
"already used"): while the check waits, after it was released (:meth:`Waiters.release`, for
:func:`monitor.pipeline.outbound.settle` and the arrival path), and as an :class:`Arrival` when
no check of this process issued the token (a late probe after a restart, a test send).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass

from monitor.capture.dialogue import Capture
from monitor.capture.evidence import Delivery, Evidence, RelayPeers
from monitor.capture.tokens import Claim, Rejected, TokenKeys

TOKENS_KEPT = 4_096  # checks whose deliveries are kept after they stopped waiting
DELIVERIES_KEPT = 4_096  # deliveries kept in all, so replays of many leaked tokens stay bounded


@dataclass(frozen=True, slots=True)
class Arrival:
    """A message no check took as its own while waiting: its valid token's claim (a late probe,
    a replay, a test send), and why it does not count when it does not (``reason``: the
    capture is unattributed; with a claim, it came from outside the check's
    ``relay_addresses``).  ``known``: the token's check ran in this process, which keeps every
    delivery of it; ``waiting``: that check was still waiting (its own result names it)."""

    capture: Capture
    claim: Claim | None
    reason: str | None = None
    known: bool = False
    waiting: bool = False


@dataclass(frozen=True, slots=True)
class Taken:
    """What became of one delivery of valid tokens: ``waiting`` a check was waiting for it,
    ``known`` its check ran in this process (it is in that check's evidence), ``counted`` it
    counts for the verdict (``why`` not), ``kept`` False when its token already has
    :data:`~.evidence.MAX_DELIVERIES`."""

    waiting: bool = False
    known: bool = False
    counted: bool = True
    why: str | None = None
    kept: bool = True


class Waiters:
    """The evidence of the checks waiting for their tokens and of those that just stopped.
    Several probes in flight never mix: each token has its own."""

    def __init__(self, keys: TokenKeys) -> None:
        self.keys = keys
        self._tokens: OrderedDict[str, Evidence] = OrderedDict()

    def expect(
        self, token: str, relay: RelayPeers | None = None, endpoint: str | None = None
    ) -> asyncio.Future[Capture]:
        future: asyncio.Future[Capture] = asyncio.get_running_loop().create_future()
        self._tokens[token] = Evidence(token, relay, endpoint, future)
        self._tokens.move_to_end(token)
        self._trim()
        return future

    def forget(self, token: str) -> None:
        """Drop ``token`` altogether (a hand test send: later deliveries are arrivals)."""
        evidence = self._tokens.pop(token, None)
        if evidence is not None and evidence.future is not None:
            evidence.future.cancel()

    def release(self, token: str) -> tuple[Delivery, ...]:
        """The check of ``token`` stopped waiting: every delivery so far.  Later ones are
        still kept for it (:meth:`settle`, :meth:`deliveries`)."""
        evidence = self._tokens.get(token)
        if evidence is None:
            return ()
        evidence.waiting = False
        if evidence.future is not None:
            evidence.future.cancel()
        evidence.settled = len(evidence.deliveries)
        return tuple(evidence.deliveries)

    def deliveries(self, token: str) -> tuple[Delivery, ...]:
        evidence = self._tokens.get(token)
        return tuple(evidence.deliveries) if evidence is not None else ()

    def settle(self, token: str) -> tuple[Delivery, ...] | None:
        """Every delivery of ``token``'s released check when more arrived since its result
        was made (``None`` otherwise); they count as taken into that result from now on."""
        evidence = self._tokens.get(token)
        if evidence is None or evidence.waiting or evidence.settled >= len(evidence.deliveries):
            return None
        evidence.settled = len(evidence.deliveries)
        return tuple(evidence.deliveries)

    def cancel_all(self) -> None:
        for evidence in self._tokens.values():
            if evidence.future is not None:
                evidence.future.cancel()
        self._tokens.clear()

    def claims(self, capture: Capture) -> tuple[list[Claim], str | None]:
        """The valid claims of ``capture``'s tokens, or why there are none.  A token counts
        however often it arrives: which delivery counts is the evidence's to say."""
        claims: list[Claim] = []
        reasons: list[str] = []
        for token in capture.tokens:
            found = self.keys.verify(token, capture.at)
            if isinstance(found, Rejected):
                reasons.append(found.reason)
            else:
                claims.append(found)
        if len({c.endpoint_id for c in claims}) > 1:
            return [], "tokens of several endpoints in one message"
        if not claims:
            return [], (reasons[0] if reasons else "no relaycert token in the recipients")
        return claims, None

    def take(self, capture: Capture, claims: list[Claim]) -> Taken:
        """Keep ``capture`` in the evidence of each of ``claims``' tokens this process knows."""
        taken = Taken()
        for claim in claims:
            evidence = self._tokens.get(claim.token)
            if evidence is None:
                continue
            delivery = evidence.add(capture) if self._room(evidence) else None
            if delivery is None:
                why = f"{DELIVERIES_KEPT} deliveries of tokens are kept already (not kept)"
                if evidence.full:
                    why = f"the token arrived more than {len(evidence.deliveries)} times (not kept)"
                return Taken(evidence.waiting, True, False, why, kept=False)
            taken = Taken(evidence.waiting, True, delivery.counted, delivery.why)
        return taken

    def _room(self, keeping: Evidence) -> bool:
        """Room for one more delivery in all: the oldest released checks' evidence goes first
        (their results are stored; a delivery of theirs is then judged against the store)."""
        kept = sum(len(e.deliveries) for e in self._tokens.values())
        for token in [t for t, e in self._tokens.items() if not e.waiting and e is not keeping]:
            if kept < DELIVERIES_KEPT:
                break
            kept -= len(self._tokens.pop(token).deliveries)
        return kept < DELIVERIES_KEPT

    def _trim(self) -> None:
        """Forget the oldest checks that no longer wait, beyond :data:`TOKENS_KEPT`."""
        excess = len(self._tokens) - TOKENS_KEPT
        for token in [t for t, e in self._tokens.items() if not e.waiting][: max(excess, 0)]:
            del self._tokens[token]
