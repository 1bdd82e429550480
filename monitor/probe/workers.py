"""Probe workers: a large one-shot scan's probes spread over forked processes, one per core.

A probe is mostly CPU (the TLS handshake, the dialogue, the kernel's loopback work), and one
Python process uses one core.  For ``relaycert scan`` over many addresses, :class:`ProbePool`
forks workers *before* anything else starts (no event loop, no other thread yet), each with
its own event loop.  The addresses are shared out by address, so the ``[probe] per_host``
bound holds exactly (an address is only ever probed by one worker), and the ``[probe]
concurrency`` bound is split between them, so it holds in total.  Results come back in chunks
over pipes, in target order once gathered; a worker never raises for a server (the probe does
not), and a worker that dies is an error naming it, not a hang.

The daemon does not use workers: its probes are spread over time and one process keeps up.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
from collections.abc import AsyncGenerator, Sequence
from dataclasses import fields
from multiprocessing.connection import Connection
from typing import Any, TypeAlias

from monitor.errors import RelaycertError
from monitor.results import ProbeResult, ProbeTarget

CHUNK = 64  # results per message back to the parent
MIN_TARGETS = 256  # below this, probing in-process is cheaper than forking

# A result crosses the pipe as its fields without the target (the parent has the target):
# a plain tuple pickles in a fraction of the time of a dataclass with a nested one.
_FIELDS = tuple(f.name for f in fields(ProbeResult) if f.name != "target")
Row: TypeAlias = tuple[Any, ...]
Chunk: TypeAlias = list[tuple[int, ProbeResult]]  # (position in the targets, result)


def pack(result: ProbeResult) -> Row:
    return tuple(getattr(result, name) for name in _FIELDS)


def unpack(target: ProbeTarget, row: Row) -> ProbeResult:
    return ProbeResult(target, *row)


def wanted(endpoints: int, configured: int) -> int:
    """How many workers a scan of ``endpoints`` gets (forked before their names resolve, so
    counted in endpoints): ``configured`` (0: one per core), none (probing in-process) for a
    small scan or a single core.  The pool then probes when the addresses are as many."""
    count = configured or (os.cpu_count() or 1)
    return count if count > 1 and endpoints >= MIN_TARGETS else 0


def shard(targets: Sequence[ProbeTarget], count: int) -> list[list[tuple[int, ProbeTarget]]]:
    """``targets`` (with their positions) dealt to ``count`` workers, each address to one
    worker only (so its per-host bound holds), addresses dealt in turn."""
    shards: list[list[tuple[int, ProbeTarget]]] = [[] for _ in range(count)]
    owner: dict[str, int] = {}
    for index, target in enumerate(targets):
        shards[owner.setdefault(target.address, len(owner) % count)].append((index, target))
    return shards


class ProbePool:
    """``count`` forked probe workers; :meth:`close` ends them (and reaps them)."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("fork")
        self.connections: list[Connection] = []
        self.processes: list[Any] = []
        for number in range(count):
            parent, child = context.Pipe()
            process = context.Process(
                target=_serve, args=(child,), name=f"relaycert-probe-{number}", daemon=True
            )
            process.start()
            child.close()
            self.connections.append(parent)
            self.processes.append(process)
        self.active = 0  # scans in flight (closing then means stopping them)
        # One job at a time per worker: its pipe has one reader.  (Locks of the running loop.)
        self._locks: tuple[asyncio.AbstractEventLoop | None, list[asyncio.Lock]] = (None, [])

    async def probe(
        self, targets: Sequence[ProbeTarget], concurrency: int, per_host: int
    ) -> list[ProbeResult]:
        """Probe ``targets`` in the workers; results in target order."""
        results: list[ProbeResult | None] = [None] * len(targets)
        async for chunk in self.stream(targets, concurrency, per_host):
            for position, result in chunk:
                results[position] = result
        return [r for r in results if r is not None]

    async def stream(
        self, targets: Sequence[ProbeTarget], concurrency: int, per_host: int
    ) -> AsyncGenerator[Chunk, None]:
        """Probe ``targets`` in the workers, yielding results (with their positions in
        ``targets``) in chunks as they come back, so the caller can work on them meanwhile."""
        count = len(self.connections)
        shards = shard(targets, count)
        share = max(1, concurrency // count)
        queue: asyncio.Queue[Chunk | BaseException | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        running = [
            asyncio.ensure_future(self._run(number, part, share, per_host, queue, loop))
            for number, part in enumerate(shards)
            if part
        ]
        try:
            for _ in running:
                while (item := await queue.get()) is not None:
                    if isinstance(item, BaseException):
                        raise item
                    yield item
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _run(
        self,
        number: int,
        part: list[tuple[int, ProbeTarget]],
        concurrency: int,
        per_host: int,
        queue: asyncio.Queue[Chunk | BaseException | None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        if self._locks[0] is not loop:
            self._locks = (loop, [asyncio.Lock() for _ in self.connections])
        async with self._locks[1][number]:
            self.connections[number].send(([t for _, t in part], concurrency, per_host))
            self.active += 1
            try:  # read in a thread: the pipe's reads block until a whole chunk is there
                await asyncio.to_thread(self._collect, number, part, queue, loop)
            except Exception as exc:  # handed to the consumer, which raises it
                queue.put_nowait(exc)
            finally:
                self.active -= 1

    def _collect(
        self,
        number: int,
        part: list[tuple[int, ProbeTarget]],
        queue: asyncio.Queue[Chunk | BaseException | None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        connection, done = self.connections[number], 0
        while done < len(part):
            try:
                rows: list[tuple[int, Row]] = connection.recv()
            except (EOFError, OSError) as exc:
                process = self.processes[number]
                raise RelaycertError(
                    f"probe worker {process.name} exited unexpectedly (exit code "
                    f"{process.exitcode}); run the scan again"
                ) from exc
            chunk = [(part[i][0], unpack(part[i][1], row)) for i, row in rows]
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
            done += len(rows)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    def close(self) -> None:
        """End the workers: at once when a scan is still in flight (Ctrl-C, an error), else
        when they have read that there is no more work."""
        if self.active:
            for process in self.processes:
                process.terminate()
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.send(None)
            connection.close()
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()


def _serve(connection: Connection) -> None:
    """A worker: probe each batch it is sent, stream the results back, until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends us
    asyncio._set_running_loop(None)  # forked from inside a running loop (tests): not ours
    from monitor import aio

    while True:
        try:
            job = connection.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        targets, concurrency, per_host = job
        aio.run(_probe(connection, targets, concurrency, per_host))


async def _probe(
    connection: Connection, targets: list[ProbeTarget], concurrency: int, per_host: int
) -> None:
    from monitor.probe.bounded import HostLimits, probe_one

    host = HostLimits(per_host)
    chains: dict[tuple[bytes, ...], tuple[bytes, ...]] = {}
    pending: list[tuple[int, Row]] = []
    semaphore = asyncio.Semaphore(concurrency)

    def send(force: bool = False) -> None:
        if pending and (force or len(pending) >= CHUNK):
            connection.send(pending)  # one chain object per chunk however many share it
            pending.clear()

    queue = iter(enumerate(targets))

    async def runner() -> None:
        # ``concurrency`` runners taking targets in turn, not one task per target: a worker
        # with 10 000 addresses keeps 32 coroutines, not 10 000 waiting on a semaphore.
        for index, target in queue:
            result = await probe_one(target, semaphore, None, host)
            if result.chain_der:
                result.chain_der = chains.setdefault(result.chain_der, result.chain_der)
            pending.append((index, pack(result)))
            send()

    await asyncio.gather(*(runner() for _ in range(min(concurrency, len(targets)))))
    send(force=True)
