"""How one renewal attempt ended.  The CLI maps :attr:`Result.failed` to exit code 2."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Result(StrEnum):
    VERIFIED = "verified"  # deployed, hooks ran, every address serves it
    DRY_RUN = "dry_run"  # issued and judged, not deployed
    SKIPPED = "skipped"  # not due, or waiting after failures
    GATE_REFUSED = "gate_refused"  # the new certificate would not pass the rules
    HOOK_FAILED = "hook_failed"
    NOT_SERVED = "not_served"  # deployed, but an address still serves the old one
    FAILED = "failed"  # ACME or solver error
    # The CA could not be asked while nothing was due: quiet (logged, recorded), an unknown
    # alert only after CA_QUIET_FOR of it, resolved when the CA answers again.
    UNCHECKED = "unchecked"
    # The attempt at which the CA had been unreachable for CA_QUIET_FOR: the unknown message.
    CA_UNREACHABLE = "ca_unreachable"

    @property
    def failed(self) -> bool:
        return self in FAILED_RESULTS


FAILED_RESULTS = frozenset(
    {Result.GATE_REFUSED, Result.HOOK_FAILED, Result.NOT_SERVED, Result.FAILED}
)


NOT_DUE = "not due yet"  # how a skip that asked the CA and found nothing due begins


@dataclass(frozen=True)
class Outcome:
    name: str
    outcome: Result
    detail: str
    old_sha256: str | None = None
    new_sha256: str | None = None
    next_check: datetime | None = None  # the CA's Retry-After for renewal information (ARI)
