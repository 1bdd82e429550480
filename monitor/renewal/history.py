"""What a renewal attempt leaves behind: the attempt recorded, and the messages its story
needs: a failure (critical, with the days left and the next attempt), a CA unreachable too long
while nothing is due (unknown, after :data:`CA_QUIET_FOR`), and the end of it (resolved: after
failures, or a replacement the CA asked for)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta

from cryptography import x509

from checks.base import Severity
from checks.certinfo import days_text
from monitor.renewal import decide
from monitor.renewal.attempt import Attempt
from monitor.renewal.notify import alert
from monitor.renewal.outcome import FAILED_RESULTS, NOT_DUE, Outcome, Result
from monitor.store import renewals
from monitor.store.reads.renewal import RenewalStatus

FAILED_VALUES = frozenset(r.value for r in FAILED_RESULTS)
# How long the CA may be unreachable while nothing is due before an (unknown) alert.
CA_QUIET_FOR = timedelta(hours=24)


QUIET = frozenset({Result.UNCHECKED.value, Result.CA_UNREACHABLE.value})
# Outcomes that end a streak: what was told of it is resolved.
ENDS = frozenset({Result.SKIPPED, Result.VERIFIED, Result.DRY_RUN})


def failing_streak(history: list[RenewalStatus]) -> list[RenewalStatus]:
    """The newest recorded attempts that did not succeed (failed, or the CA unreachable),
    newest first.  Any other recorded attempt ends it; so does a check that found the CA
    answering again (:func:`ends_streak` records one)."""
    streak = []
    for attempt in history:
        if attempt.outcome not in FAILED_VALUES and attempt.outcome not in QUIET:
            break
        streak.append(attempt)
    return streak


def alerted(streak: list[RenewalStatus]) -> bool:
    """Whether anyone was told of the streak (a failure, or the unknown message of a CA
    unreachable too long): then its end is told too."""
    return any(
        h.outcome in FAILED_VALUES or h.outcome == Result.CA_UNREACHABLE.value for h in streak
    )


def ends_streak(streak: list[RenewalStatus], outcome: Outcome) -> bool:
    """Whether ``outcome`` (not recorded otherwise) must be recorded: a check that asked the
    CA and found nothing due, after a streak; it ends the streak.  (A skip for other reasons,
    a DANE wait or a backoff, ends nothing.)"""
    return bool(streak) and outcome.outcome is Result.SKIPPED and outcome.detail.startswith(NOT_DUE)


def escalated(streak: list[RenewalStatus], outcome: Outcome, now: datetime) -> Outcome:
    """An unchecked attempt that finds the CA unreachable for :data:`CA_QUIET_FOR`, counted
    from the first quiet attempt of the streak, and not told yet: the unknown message's."""
    if outcome.outcome is not Result.UNCHECKED:
        return outcome
    quiet = []
    for attempt in streak:
        if attempt.outcome not in QUIET:
            break
        quiet.append(attempt)
    if not quiet or any(a.outcome == Result.CA_UNREACHABLE.value for a in quiet):
        return outcome
    if now - quiet[-1].started_at < CA_QUIET_FOR:
        return outcome
    return replace(outcome, outcome=Result.CA_UNREACHABLE)


async def record(
    attempt: Attempt,
    started: datetime,
    outcome: Outcome,
    order_url: str | None,
    recovered: bool,
    streak: list[RenewalStatus],
    leaf: x509.Certificate | None,
) -> None:
    """Store the attempt; alert on failure (with the days left and the next attempt), on a CA
    unreachable for :data:`CA_QUIET_FOR` while nothing is due (unknown), and send a recovery
    message after either."""
    row_id = await asyncio.to_thread(
        renewals.record_attempt,
        attempt.store,
        attempt.settings.name,
        started,
        outcome.outcome.value,
        outcome.detail,
        outcome.old_sha256,
        outcome.new_sha256,
        order_url,
        attempt.clock(),
    )
    context, store, settings = attempt.context, attempt.store, attempt.settings
    left = _time_left(leaf, started)
    if outcome.outcome.failed:
        this = RenewalStatus(
            settings.name, started, attempt.clock(), outcome.outcome.value, None, None, None
        )
        retry = decide.backoff([this, *streak])
        when = f"; next attempt after {retry:%Y-%m-%d %H:%M} UTC" if retry else ""
        await asyncio.to_thread(alert, context, store, row_id, outcome, "opened", left + when)
    elif outcome.outcome is Result.CA_UNREACHABLE:
        await asyncio.to_thread(
            alert, context, store, row_id, outcome, "opened", left, Severity.UNKNOWN
        )
    elif outcome.outcome in ENDS and (
        recovered or (outcome.outcome is Result.VERIFIED and _replaced(outcome.detail))
    ):
        # After failures, or a replacement the CA asked for (revoked, ARI): the story's end.
        await asyncio.to_thread(alert, context, store, row_id, outcome, "resolved")


def _replaced(detail: str) -> bool:
    """Whether a renewal replaced a certificate its CA revoked or asked to replace early."""
    return "cert.revoked" in detail or "the CA asked" in detail


def _time_left(leaf: x509.Certificate | None, now: datetime) -> str:
    if leaf is None:
        return ""
    left = leaf.not_valid_after_utc - now
    if left.total_seconds() <= 0:
        return f"; the served certificate expired {days_text(-left)} ago"
    return f"; {days_text(left)} left before the served certificate expires"
