"""Who is waiting for which token at the capture listener, and what a message's tokens count as.

An outbound check registers its token with :meth:`Waiters.expect` before it submits the probe
message and awaits the future.  A message's tokens are verified (:meth:`Waiters.claims`): only a
token this installation issued that has not expired counts, and each counts once, so a replay
is refused.  A valid token nobody waits for any more is kept in :attr:`Waiters.late` for the
check that just gave up on it.  Every other message is an :class:`Arrival`.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass

from monitor.capture.dialogue import Capture
from monitor.capture.tokens import Claim, Rejected, TokenKeys

USED_TOKENS = 65_536  # tokens remembered as used (each counts once)
LATE_KEPT = 4_096  # late arrivals kept for the checks that just gave up on them


@dataclass(frozen=True, slots=True)
class Arrival:
    """A message no check was waiting for: its valid token's claim (a late probe, a test send),
    or why it has none (``reason``: the capture is unattributed)."""

    capture: Capture
    claim: Claim | None
    reason: str | None = None


class Waiters:
    """The futures of the checks waiting for their tokens, the tokens already used, and the
    late arrivals.  Several probes in flight never mix: each waits for its own token."""

    def __init__(self, keys: TokenKeys) -> None:
        self.keys = keys
        self._waiting: dict[str, asyncio.Future[Capture]] = {}
        self._used: OrderedDict[str, None] = OrderedDict()
        # Valid tokens that arrived with no check waiting, for a check whose result is not
        # stored yet (it just gave up): :func:`monitor.pipeline.outbound.settle` takes them.
        self.late: OrderedDict[str, Capture] = OrderedDict()

    def expect(self, token: str) -> asyncio.Future[Capture]:
        future: asyncio.Future[Capture] = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        return future

    def forget(self, token: str) -> None:
        future = self._waiting.pop(token, None)
        if future is not None and not future.done():
            future.cancel()

    def cancel_all(self) -> None:
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    def claims(self, capture: Capture) -> tuple[list[Claim], str | None]:
        """The valid, unused claims of ``capture``'s tokens, or why there are none.  Each token
        counts once: a replay of a used one is refused."""
        claims: list[Claim] = []
        reasons: list[str] = []
        for token in capture.tokens:
            found = self.keys.verify(token, capture.at)
            if isinstance(found, Rejected):
                reasons.append(found.reason)
            elif found.token in self._used:
                reasons.append("the token was already used (a replayed or duplicated message)")
            else:
                claims.append(found)
        if len({c.endpoint_id for c in claims}) > 1:
            return [], "tokens of several endpoints in one message"
        if not claims:
            return [], (reasons[0] if reasons else "no relaycert token in the recipients")
        for claim in claims:
            self._used[claim.token] = None
            if len(self._used) > USED_TOKENS:
                self._used.popitem(last=False)
        return claims, None

    def hand_over(self, capture: Capture, claims: list[Claim]) -> bool:
        """Complete the checks waiting for ``claims``' tokens; whether any was waiting."""
        matched = False
        for claim in claims:
            future = self._waiting.pop(claim.token, None)
            if future is not None and not future.done():
                future.set_result(capture)
                matched = True
        return matched

    def keep_late(self, capture: Capture, claims: list[Claim]) -> None:
        """Keep ``capture`` for the checks of ``claims`` that no longer wait (the oldest go)."""
        for claim in claims:
            self.late[claim.token] = capture
            if len(self.late) > LATE_KEPT:
                self.late.popitem(last=False)
