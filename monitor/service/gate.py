"""The connection accounting of the daemon's HTTP listener (:mod:`.httpd`): how many are open,
which are idle (waiting for a request head, or kept open between requests) and which are
answering, each with the timer that closes it when it takes too long; what to close to make
room for a newcomer.  Every rule it applies is in :class:`Limits`."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from monitor.logs import event

log = logging.getLogger("relaycert.http")


class Connection(Protocol):
    """What the gate needs of a connection (:class:`monitor.service.httpd.Connection`)."""

    @property
    def transport(self) -> asyncio.Transport | None: ...

    def force_close(self) -> None: ...

    def refuse(self) -> None: ...


@dataclass(frozen=True)
class Limits:
    connections: int = 256  # open at once; the daemon keeps most of its 1024 descriptors
    request_timeout: float = 10.0  # seconds for a request head, and for an idle kept connection
    body: int = 16 * 1024  # bytes of request body
    line: int = 8190  # bytes of the request line and of one header line (aiohttp's default)
    threads: int = 4  # blocking work (store reads, rendering) at once, the rest waits its turn
    answer_timeout: float = 60.0  # seconds from a request head to the last byte of its answer


class Gate:
    """The open connections, and the idle ones among them, longest idle first, each with the
    timer that closes it when its request head is not complete in time."""

    def __init__(self, limits: Limits, loop: asyncio.AbstractEventLoop) -> None:
        self.limits, self.loop = limits, loop
        self.open: set[Connection] = set()
        self.idle: dict[Connection, asyncio.TimerHandle] = {}
        # connections answering a request, each with the timer that closes a client that does
        # not take its answer in time (it stopped reading: the write would wait for ever)
        self.answers: dict[Connection, asyncio.TimerHandle] = {}
        self.evicted = self.refused = self.expired = self.abandoned = 0
        self._told = float("-inf")

    def opened(self, conn: Connection) -> None:
        if len(self.open) >= self.limits.connections and not self._make_room():
            self.refused += 1
            self._tell()
            conn.refuse()
            return
        self.open.add(conn)
        self.wait(conn)

    def _make_room(self) -> bool:
        """Close the connection idle longest, answering it 503 first; False when none is."""
        oldest = next(iter(self.idle), None)
        if oldest is None:
            return False
        self.evicted += 1
        self._tell()
        self.closed(oldest)
        oldest.refuse()
        return True

    def wait(self, conn: Connection) -> None:
        """``conn`` is idle from now: its (next) request head is due within the timeout."""
        if conn in self.open:
            self.busy(conn)
            timeout = self.limits.request_timeout
            self.idle[conn] = self.loop.call_later(timeout, self._expire, conn)

    def busy(self, conn: Connection) -> None:
        timer = self.idle.pop(conn, None)
        if timer is not None:
            timer.cancel()
        answer = self.answers.pop(conn, None)
        if answer is not None:
            answer.cancel()

    def answering(self, conn: Connection) -> None:
        """``conn``'s request head is complete: its answer is due within the answer timeout."""
        self.busy(conn)
        if conn in self.open:
            timeout = self.limits.answer_timeout
            self.answers[conn] = self.loop.call_later(timeout, self._abandon, conn)

    def closed(self, conn: Connection) -> None:
        self.open.discard(conn)
        self.busy(conn)

    def close(self) -> None:
        for timer in (*self.idle.values(), *self.answers.values()):
            timer.cancel()
        self.idle.clear()
        self.answers.clear()

    def _abandon(self, conn: Connection) -> None:
        if self.answers.pop(conn, None) is not None:
            self.abandoned += 1
            self.open.discard(conn)
            event(log, logging.WARNING, "http.answer_abandoned", after_s=self.limits.answer_timeout)
            conn.force_close()
            if conn.transport is not None:
                conn.transport.abort()  # its unread answer is dropped with it

    def _expire(self, conn: Connection) -> None:
        if self.idle.pop(conn, None) is not None:
            self.expired += 1
            self.open.discard(conn)
            conn.force_close()

    def _tell(self) -> None:
        """One warning a minute at most while connections are turned away."""
        now = self.loop.time()
        if now - self._told >= 60:
            self._told = now
            limit, evicted, refused = self.limits.connections, self.evicted, self.refused
            event(
                log,
                logging.WARNING,
                "http.connections_full",
                limit=limit,
                evicted=evicted,
                refused=refused,
            )
