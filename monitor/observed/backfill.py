"""Reading whole files once: a log given on the command line, and the backfill of a followed
log's rotated siblings (plain or gzip, oldest first), each read once: its fingerprint joins the
follower's checkpoint (``done``) after its last line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from monitor.observed.follow import Follower
from monitor.observed.lines import LineSplitter
from monitor.observed.logfiles import chunks, fingerprint, head_of, rotated


def batches(path: Path) -> Iterator[list[bytes]]:
    """The complete lines of ``path`` (``.gz`` decompressed, bounded), a chunk at a time."""
    splitter = LineSplitter()
    for chunk in chunks(path):
        yield splitter.feed(chunk)


def blocks(path: Path) -> Iterator[bytes]:
    """The same as :func:`batches`, as blocks of complete lines (for ``feed_block``)."""
    splitter = LineSplitter()
    for chunk in chunks(path):
        yield splitter.block(chunk)


def backfill(follower: Follower) -> Iterator[list[bytes]]:
    """The lines of every rotated sibling of the followed file not read before."""
    current = follower.checkpoint
    for sibling in rotated(follower.path):
        head = head_of(sibling)
        mark = fingerprint(head)
        if not head or mark in follower.done:
            continue
        if current is not None and fingerprint(head[: current.length]) == current.fingerprint:
            continue  # the followed file itself, rotated: the follower reads it
        yield from batches(sibling)
        follower.mark_done((mark,))
