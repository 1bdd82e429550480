"""A whole log file into a :class:`Summary`, what ``relaycert observe LOGFILE`` does: in one
process, or split by byte ranges over worker processes (``workers``).

A worker starts reading :data:`WARM` bytes before its range, and those lines only warm its
parser (the queue ids' senders, the TLS lines of the smtp processes): a delivery belongs to the
worker whose range holds its line, so each is counted exactly once, and what it needs from
before it (its ``from=``, its TLS line, seconds earlier) is in the warm-up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from monitor.observed.base import Delivery, LogParser
from monitor.observed.lines import LineSplitter
from monitor.observed.logfiles import CHUNK, open_log
from monitor.observed.summary import Summary, merge

WARM = 8 << 20  # read before a worker's range, parsed but not counted


@dataclass(frozen=True)
class Result:
    summary: Summary
    tls_logging: dict[str, tuple[int, int]]


def summarize(
    path: Path,
    make_parser: Callable[[], LogParser],
    workers: int = 1,
    min_split: int = 64 * CHUNK,
    keep: Callable[[Delivery], bool] | None = None,
) -> Result:
    """``make_parser`` (and ``keep``, which picks the deliveries counted) must be picklable (a
    module-level function or a ``functools.partial``) when ``workers`` > 1.  A file under
    ``min_split`` bytes is read in one process; a ``.gz`` one is not read here (its bytes
    cannot be split: :func:`monitor.observed.backfill.blocks` reads it)."""
    if path.suffix == ".gz":
        raise ValueError(f"{path}: a compressed log is read whole, not by summarize")
    size = path.stat().st_size
    if workers <= 1 or size < min_split:
        return _range(path, make_parser, 0, size, keep)
    bounds = _line_starts(path, [size * i // workers for i in range(workers + 1)])
    with ProcessPoolExecutor(max_workers=workers) as pool:
        count = len(bounds) - 1
        parts = list(
            pool.map(
                _range, [path] * count, [make_parser] * count, bounds, bounds[1:], [keep] * count
            )
        )
    tls: dict[str, tuple[int, int]] = {}
    for part in parts:
        for name, (deliveries, with_tls) in part.tls_logging.items():
            before = tls.get(name, (0, 0))
            tls[name] = (before[0] + deliveries, before[1] + with_tls)
    return Result(merge([p.summary for p in parts]), tls)


def _line_starts(path: Path, offsets: list[int]) -> list[int]:
    """Each offset moved forward to the start of a line (the first and last stay)."""
    handle = open_log(path)
    if handle is None:
        return offsets[:1] + offsets[-1:]
    with handle:
        moved = [offsets[0]]
        for offset in offsets[1:-1]:
            handle.seek(offset - 1)
            handle.readline()
            moved.append(max(handle.tell(), moved[-1]))
        moved.append(offsets[-1])
    return sorted(set(moved))


def _range(
    path: Path,
    make_parser: Callable[[], LogParser],
    start: int,
    stop: int,
    keep: Callable[[Delivery], bool] | None = None,
) -> Result:
    """The deliveries of the lines in [start, stop), both at line starts (those ``keep``
    picks, when given)."""
    parser, summary = make_parser(), Summary()
    handle = open_log(path)
    if handle is None:
        return Result(summary, {})
    with handle:
        warm = max(0, start - WARM)
        handle.seek(warm)
        if warm:
            handle.readline()  # the rest of a line begun before
        splitter = LineSplitter()
        for chunk in _chunks(handle, start - handle.tell()):
            parser.feed_block(splitter.block(chunk))
        splitter.reset()
        warmed = parser.tls_logging()  # the warm-up's deliveries are another range's
        for chunk in _chunks(handle, stop - start):
            block = splitter.block(chunk)
            summary.lines += block.count(b"\n") + 1 if block else 0
            for delivery in parser.feed_block(block):
                if keep is None or keep(delivery):
                    summary.add(delivery)
    summary.skipped = getattr(parser, "skipped", 0) + splitter.too_long
    tls = {
        name: (total - warmed.get(name, (0, 0))[0], seen - warmed.get(name, (0, 0))[1])
        for name, (total, seen) in parser.tls_logging().items()
    }
    return Result(summary, {name: counts for name, counts in tls.items() if counts[0]})


def _chunks(handle: BinaryIO, length: int) -> Iterator[bytes]:
    while length > 0 and (chunk := handle.read(min(CHUNK, length))):
        length -= len(chunk)
        yield chunk
