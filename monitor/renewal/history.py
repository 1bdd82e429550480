"""What a renewal attempt leaves behind: the attempt recorded, and the messages its story
needs: a failure (critical, with the days left and the next attempt), a CA unreachable too long
while nothing is due (unknown, after :data:`CA_QUIET_FOR`), and the end of it (resolved: after
failures, or a replacement the CA asked for)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from cryptography import x509

from checks.base import Severity
from checks.certinfo import days_text
from monitor.renewal import decide, notify
from monitor.renewal.attempt import Attempt
from monitor.renewal.outcome import FAILED_RESULTS, Outcome, Result
from monitor.store import queries, renewals

FAILED_VALUES = frozenset(r.value for r in FAILED_RESULTS)
# How long the CA may be unreachable while nothing is due before an (unknown) alert.
CA_QUIET_FOR = timedelta(hours=24)


def failing_streak(history: list[queries.RenewalStatus]) -> list[queries.RenewalStatus]:
    """The newest attempts that did not succeed, newest first."""
    streak = []
    for attempt in history:
        if attempt.outcome not in FAILED_VALUES and attempt.outcome != Result.UNCHECKED.value:
            break
        streak.append(attempt)
    return streak


def alerted(streak: list[queries.RenewalStatus], now: datetime) -> bool:
    """Whether the failing streak has been told to anyone (a failure, or the CA unreachable
    for :data:`CA_QUIET_FOR`): then its end is told too."""
    return any(h.outcome in FAILED_VALUES for h in streak) or quiet_too_long(streak, now)


def quiet_too_long(streak: list[queries.RenewalStatus], until: datetime) -> bool:
    """Whether the CA has been unreachable (nothing due) for :data:`CA_QUIET_FOR` by
    ``until``, counting from the oldest attempt of the streak."""
    return bool(streak) and until - streak[-1].started_at >= CA_QUIET_FOR


async def record(
    attempt: Attempt,
    started: datetime,
    outcome: Outcome,
    order_url: str | None,
    recovered: bool,
    streak: list[queries.RenewalStatus],
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
    config, store, settings = attempt.config, attempt.store, attempt.settings
    left = _time_left(leaf, started)
    if outcome.outcome.failed:
        this = queries.RenewalStatus(
            settings.name, started, attempt.clock(), outcome.outcome.value, None, None, None
        )
        retry = decide.backoff([this, *streak])
        when = f"; next attempt after {retry:%Y-%m-%d %H:%M} UTC" if retry else ""
        await asyncio.to_thread(
            notify.alert, config, store, row_id, settings, outcome, "opened", left + when
        )
    elif outcome.outcome is Result.UNCHECKED:
        crossed = quiet_too_long([_as_status(settings.name, started), *streak], started)
        if crossed and not quiet_too_long(streak, streak[0].started_at if streak else started):
            await asyncio.to_thread(
                notify.alert,
                config,
                store,
                row_id,
                settings,
                outcome,
                "opened",
                left,
                Severity.UNKNOWN,
            )
    elif recovered or (outcome.outcome is Result.VERIFIED and _replaced(outcome.detail)):
        # After failures, or a replacement the CA asked for (revoked, ARI): the story's end.
        await asyncio.to_thread(notify.alert, config, store, row_id, settings, outcome, "resolved")


def _replaced(detail: str) -> bool:
    """Whether a renewal replaced a certificate its CA revoked or asked to replace early."""
    return "cert.revoked" in detail or "the CA asked" in detail


def _as_status(name: str, started: datetime) -> queries.RenewalStatus:
    return queries.RenewalStatus(name, started, started, Result.UNCHECKED.value, None, None, None)


def _time_left(leaf: x509.Certificate | None, now: datetime) -> str:
    if leaf is None:
        return ""
    left = leaf.not_valid_after_utc - now
    if left.total_seconds() <= 0:
        return f"; the served certificate expired {days_text(-left)} ago"
    return f"; {days_text(left)} left before the served certificate expires"
