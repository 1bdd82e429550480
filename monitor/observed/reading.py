"""Reading the sources of observed outcomes once, what ``relaycert observe`` does: each log
(with its rotated siblings, oldest first, when it is a configured source) into one
:class:`~monitor.observed.summary.Summary`, and what is stuck in each queue now.  A plain log over
64 MiB is split over worker processes (:mod:`.whole`), a compressed one read whole.  The caller
passes plain values: which instances of which log are which endpoints, the smart hosts, the
address key and the zone."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monitor.observed.base import Delivery, LogParser
from monitor.observed.summary import Summary

# log file -> instance (syslog_name) -> the endpoints it is; no instances: every one counts
Sources = dict[Path, dict[str, list[str]]]


def _files(path: Path, configured: bool) -> Iterator[Path]:
    """A configured log with its rotated siblings, oldest first; a named file alone."""
    from monitor.observed.logfiles import rotated

    if configured:
        yield from rotated(path)
    if path.exists():
        yield path


def read_sources(
    sources: Sources,
    smart_hosts: tuple[str, ...],
    key: bytes,
    zone: str,
    since: datetime | None,
) -> tuple[Summary, dict[str, tuple[int, int]], dict[str, str]]:
    """Every file of every source into one summary: a plain file over 64 MiB split over one
    worker process per core (:mod:`monitor.observed.whole`), a ``.gz`` one read whole."""
    import os
    from functools import partial

    from monitor.observed.summary import merge
    from monitor.observed.whole import summarize

    hosts = smart_hosts
    workers = min(os.cpu_count() or 1, 8)
    parts: list[Summary] = []
    tls_logging: dict[str, tuple[int, int]] = {}
    names: dict[str, str] = {}
    for log, instances in sources.items():
        for instance, endpoints in instances.items():
            names[instance] = ", ".join(endpoints)
        keep = partial(_keep, frozenset(instances), since)
        for path in _files(log, bool(instances)):
            make = partial(_parser, hosts, key, zone, _modified(path))
            if path.suffix == ".gz":
                summary, tls = _whole(path, make(), keep)
            else:
                result = summarize(path, make, workers=workers, keep=keep)
                summary, tls = result.summary, result.tls_logging
            parts.append(summary)
            for instance, (deliveries, with_tls) in tls.items():
                if not instances or instance in instances:
                    before = tls_logging.get(instance, (0, 0))
                    tls_logging[instance] = (before[0] + deliveries, before[1] + with_tls)
    return (merge(parts) if parts else Summary()), tls_logging, names


def _keep(instances: frozenset[str], since: datetime | None, delivery: Delivery) -> bool:
    """A delivery of one of ``instances`` (any, for a file named on the command line), since
    ``since``: another instance in the same log is not an endpoint of ours."""
    if instances and delivery.instance not in instances:
        return False
    return since is None or delivery.at >= since


def _parser(hosts: tuple[str, ...], key: bytes, zone: str, reference: datetime) -> LogParser:
    """A Postfix parser (module level: worker processes make their own from these values)."""
    from monitor.observed.nexthop import NextHops
    from monitor.observed.postfix import PostfixParser
    from monitor.observed.privacy import Privacy
    from monitor.observed.timestamps import Timestamps

    stamps = Timestamps(reference, _zone(zone))  # a traditional timestamp's year: observed.md
    return PostfixParser(NextHops(hosts), Privacy(key), stamps)


def _whole(
    path: Path, parser: LogParser, keep: Callable[[Delivery], bool]
) -> tuple[Summary, dict[str, tuple[int, int]]]:
    """A compressed file, decompressed as it is read (bounded: monitor.observed.logfiles)."""
    from monitor.observed.backfill import blocks

    summary = Summary()
    for block in blocks(path):
        summary.lines += block.count(b"\n") + 1 if block else 0
        for delivery in parser.feed_block(block):
            if keep(delivery):
                summary.add(delivery)
    summary.skipped += getattr(parser, "skipped", 0)
    return summary, parser.tls_logging()


def _modified(path: Path) -> datetime:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return datetime.now(UTC)


def _zone(name: str) -> Any:
    if name == "local":
        return None  # Timestamps: this host's zone
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def queues(wanted: list[tuple[str, Path | None]], key: bytes) -> list[dict[str, Any]]:
    """What is stuck now in the queue of each (endpoint, Postfix config directory): the
    recipients deferred, by class (``postqueue -j``; a recipient not tried yet has no class)."""
    from collections import Counter

    from monitor.observed.postqueue import read_queue
    from monitor.observed.privacy import Privacy

    found = []
    privacy = Privacy(key)
    for endpoint, folder in wanted:
        queued = read_queue(privacy, config_dir=folder)
        classes = Counter(q.outcome.value for q in queued if q.outcome is not None)
        found.append(
            {
                "endpoint": endpoint,
                "recipients": len(queued),
                "not_tried_yet": sum(q.outcome is None for q in queued),
                "outcomes": dict(sorted(classes.items())),
                "sample_queue_ids": sorted({q.queue_id for q in queued})[:5],
            }
        )
    return found
