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
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from monitor.errors import RelaycertError
from monitor.probe.result import ProbeResult, ProbeTarget

CHUNK = 64  # results per message back to the parent
MIN_TARGETS = 256  # below this, probing in-process is cheaper than forking


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

    async def probe(
        self, targets: Sequence[ProbeTarget], concurrency: int, per_host: int
    ) -> list[ProbeResult]:
        """Probe ``targets`` in the workers; results in target order."""
        count = len(self.connections)
        shards = shard(targets, count)
        share = max(1, concurrency // count)
        results: list[ProbeResult | None] = [None] * len(targets)
        await asyncio.gather(
            *(
                self._run(number, shard, share, per_host, results)
                for number, shard in enumerate(shards)
                if shard
            )
        )
        return [r for r in results if r is not None]

    async def _run(
        self,
        number: int,
        shard: list[tuple[int, ProbeTarget]],
        concurrency: int,
        per_host: int,
        results: list[ProbeResult | None],
    ) -> None:
        self.connections[number].send(([t for _, t in shard], concurrency, per_host))
        self.active += 1
        try:  # read in a thread: the pipe's reads block until a whole chunk is there
            await asyncio.to_thread(self._collect, number, shard, results)
        finally:
            self.active -= 1

    def _collect(
        self, number: int, shard: list[tuple[int, ProbeTarget]], results: list[ProbeResult | None]
    ) -> None:
        connection, done = self.connections[number], 0
        while done < len(shard):
            try:
                chunk: list[tuple[int, ProbeResult]] = connection.recv()
            except (EOFError, OSError) as exc:
                process = self.processes[number]
                raise RelaycertError(
                    f"probe worker {process.name} exited unexpectedly (exit code "
                    f"{process.exitcode}); run the scan again"
                ) from exc
            for position, result in chunk:
                results[shard[position][0]] = result
            done += len(chunk)

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
    pending: list[tuple[int, ProbeResult]] = []
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
            pending.append((index, result))
            send()

    await asyncio.gather(*(runner() for _ in range(min(concurrency, len(targets)))))
    send(force=True)
