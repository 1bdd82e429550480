"""The summary ``relaycert observe`` prints: per (instance, next hop) and class, how many, first
and last seen, a few queue ids to look up, and one reply as an example; plus what the log
cannot tell (no TLS lines: ``smtp_tls_loglevel``).  Plain data, JSON-able (``to_json``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from monitor.observed.base import Delivery, Outcome

SAMPLES = 5


@dataclass
class Tally:
    count: int = 0
    first: datetime | None = None
    last: datetime | None = None
    queue_ids: list[str] = field(default_factory=list)
    reply: str = ""  # the first reply of the class, for "other" the one to read
    tls_unknown: int = 0  # of them without a TLS line (disconnect and tls_failed unsure)

    def add(self, delivery: Delivery) -> None:
        self.count += 1
        at = delivery.at
        if self.first is None or at < self.first:
            self.first = at
        if self.last is None or at > self.last:
            self.last = at
        if len(self.queue_ids) < SAMPLES and delivery.queue_id not in self.queue_ids:
            self.queue_ids.append(delivery.queue_id)
        if not self.reply:
            self.reply = delivery.reply
        self.tls_unknown += delivery.tls == "unknown"

    def merge(self, other: Tally) -> None:
        self.count += other.count
        for at in (other.first, other.last):
            if at is not None and (self.first is None or at < self.first):
                self.first = at
            if at is not None and (self.last is None or at > self.last):
                self.last = at
        self.queue_ids = list(dict.fromkeys(self.queue_ids + other.queue_ids))[:SAMPLES]
        self.reply = self.reply or other.reply
        self.tls_unknown += other.tls_unknown


def merge(parts: list[Summary]) -> Summary:
    """One summary of several (the ranges of one file, in order)."""
    whole = Summary()
    for part in parts:
        whole.lines += part.lines
        whole.skipped += part.skipped
        for key, tally in part.tallies.items():
            whole.tallies.setdefault(key, Tally()).merge(tally)
    return whole


@dataclass
class Summary:
    tallies: dict[tuple[str, str, Outcome], Tally] = field(default_factory=dict)
    lines: int = 0
    skipped: int = 0  # too long, or no timestamp

    def add(self, delivery: Delivery) -> None:
        key = (delivery.instance, delivery.next_hop, delivery.outcome)
        tally = self.tallies.get(key)
        if tally is None:
            tally = self.tallies[key] = Tally()
        tally.add(delivery)

    def count(self, outcome: Outcome, instance: str | None = None) -> int:
        return sum(
            t.count
            for (name, _, kind), t in self.tallies.items()
            if kind is outcome and instance in (None, name)
        )

    def hints(self, tls_logging: dict[str, tuple[int, int]]) -> list[str]:
        """What to change so the log says more, per instance."""
        hints = []
        for instance, (deliveries, with_tls) in sorted(tls_logging.items()):
            if deliveries and not with_tls:
                hints.append(
                    f"{instance}: no TLS lines for its {deliveries} deliveries to Exchange Online: "
                    f"set smtp_tls_loglevel = 1 (postconf -c <its config> -e "
                    "smtp_tls_loglevel=1; postfix reload), or a session dropped after STARTTLS "
                    "(disconnect_after_tls) cannot be told from a failed handshake (tls_failed)"
                )
        return hints

    def to_json(self, tls_logging: dict[str, tuple[int, int]] | None = None) -> dict[str, Any]:
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        for (instance, hop, outcome), tally in sorted(self.tallies.items()):
            group = groups.setdefault(
                (instance, hop), {"instance": instance, "next_hop": hop, "outcomes": {}}
            )
            group["outcomes"][outcome.value] = {
                "count": tally.count,
                "first_seen": tally.first.isoformat() if tally.first else None,
                "last_seen": tally.last.isoformat() if tally.last else None,
                "sample_queue_ids": list(tally.queue_ids),
                "sample_reply": tally.reply,
                "without_tls_line": tally.tls_unknown,
            }
        return {
            "lines": self.lines,
            "lines_skipped": self.skipped,
            "endpoints": list(groups.values()),
            "hints": self.hints(tls_logging or {}),
        }
