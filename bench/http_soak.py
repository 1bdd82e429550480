"""Soak: the daemon's HTTP listener under many concurrent ``/healthz`` clients (#35).

    .venv/bin/python bench/http_soak.py [--clients 200] [--requests 50] [--keep-alive]
    PYTHONPATH=/tmp/old-listener .venv/bin/python bench/http_soak.py --source /tmp/old-listener

Starts a :class:`~monitor.service.listener.MetricsServer` in a child process (on the daemon's
event loop, uvloop, or ``--loop asyncio``) on a loopback port, against a temporary SQLite store, so
every ``/healthz`` is a real round trip to the database.  Then ``--clients`` clients each send
``--requests`` requests one after the other, all clients at once: by default each request on a
new connection (``Connection: close``, what the audit measured), with ``--keep-alive`` on one
connection per client that is reused while the server keeps it open (a request that fails on a
reused connection before any byte of the answer is sent again once on a new one, as every HTTP
client does, and counted as retried).

It prints the requests answered and lost (no status line within ``--timeout`` seconds, or the
connection cut), the answers by status, the tracebacks and ``Unhandled exception`` lines the
server logged, the p50 and p99 latency and the requests per second.  ``--source`` runs the
listener of another checkout (a ``git worktree`` of an older commit) for before/after figures.
Exit status 1 when a request is lost or the server logged a traceback.  Loopback only; bounded
by the request count and the timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SERVER = """\
import asyncio, logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
from monitor.service.listener import MetricsServer
from monitor.store.engine import Store


async def main():
    store = Store.open(sys.argv[1])
    server = MetricsServer(store, lambda: None, lambda: True)
    await server.start("127.0.0.1", 0)
    print(server.port(), flush=True)
    await asyncio.to_thread(sys.stdin.read)  # until the bench closes our stdin
    await server.close()
    store.close()


if sys.argv[2] == "uvloop":
    from monitor.aio import run
    run(main())
else:
    asyncio.run(main())
"""


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    lost: Counter[str] = field(default_factory=Counter)
    retried: int = 0
    latencies: list[float] = field(default_factory=list)


class Client:
    """One client: its requests one after the other, on new or reused connections."""

    def __init__(self, port: int, keep_alive: bool, timeout: float, tally: Tally) -> None:
        self.port, self.keep_alive, self.timeout, self.tally = port, keep_alive, timeout, tally
        self.stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.request = (
            f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
        ).encode()

    async def run(self, count: int) -> None:
        for _ in range(count):
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self.timeout):
                    status = await self.once()
            except TimeoutError:
                self.tally.lost["timeout"] += 1
                self.drop()
                continue
            except (ConnectionError, asyncio.IncompleteReadError, OSError, ValueError) as exc:
                self.tally.lost[type(exc).__name__] += 1
                self.drop()
                continue
            self.tally.statuses[status] += 1
            self.tally.latencies.append(time.perf_counter() - started)
        self.drop()

    async def once(self) -> int:
        reused = self.stream is not None
        try:
            return await self.exchange()
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            partial = isinstance(exc, asyncio.IncompleteReadError) and exc.partial
            if not reused or partial:
                raise
            self.tally.retried += 1  # the server closed an idle kept connection: send again
            self.drop()
            return await self.exchange()

    async def exchange(self) -> int:
        if self.stream is None:
            self.stream = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.stream
        writer.write(self.request)
        await writer.drain()
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
        status = int(head.split(" ", 2)[1])
        length = next(
            (
                int(x.split(":", 1)[1])
                for x in head.split("\r\n")
                if x.startswith("content-length:")
            ),
            None,
        )
        if length is None:
            await reader.read()  # the body runs to the end of the connection
        else:
            await reader.readexactly(length)
        if not self.keep_alive or length is None or "connection: close" in head:
            self.drop()
        return status

    def drop(self) -> None:
        if self.stream is not None:
            self.stream[1].close()
            self.stream = None


async def soak(port: int, clients: int, requests: int, keep_alive: bool, timeout: float) -> Tally:
    tally = Tally()
    everyone = [Client(port, keep_alive, timeout, tally) for _ in range(clients)]
    await asyncio.gather(*(c.run(requests) for c in everyone))
    return tally


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=50, help="per client")
    parser.add_argument("--keep-alive", action="store_true", help="reuse one connection each")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument("--source", type=Path, default=ROOT, help="checkout whose listener runs")
    parser.add_argument(
        "--loop", choices=("uvloop", "asyncio"), default="uvloop", help="the server's event loop"
    )
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="relaycert-bench-http-"))
    errors = folder / "server.err"
    env = {**os.environ, "PYTHONPATH": str(args.source.resolve())}
    with errors.open("w") as stream:
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, f"sqlite:///{folder / 'store.db'}", args.loop],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stream,
            text=True,
            cwd=args.source,
            env=env,
        )
    try:
        assert server.stdout is not None and server.stdin is not None
        line = server.stdout.readline()
        if not line.strip().isdigit():
            print(f"the server did not start:\n{errors.read_text()}", file=sys.stderr)
            return 1
        port = int(line)
        started = time.perf_counter()
        tally = _run(soak(port, args.clients, args.requests, args.keep_alive, args.timeout))
        elapsed = time.perf_counter() - started
    finally:
        with contextlib.suppress(OSError):
            if server.stdin is not None:
                server.stdin.close()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    log = errors.read_text(errors="replace")
    if "Traceback" not in log:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        print(f"the server's log: {errors}")
    tracebacks = log.count("Traceback (most recent call last)")
    unhandled = log.count("Unhandled exception")
    total = args.clients * args.requests
    answered = sum(tally.statuses.values())
    lost = sum(tally.lost.values())
    mode = "keep-alive" if args.keep_alive else "a new connection per request"
    print(f"source: {args.source.resolve()} ({args.loop})")
    print(f"requests: {total} ({args.clients} clients x {args.requests}, {mode})")
    print(f"answered: {answered}, lost: {lost}" + (f" {dict(tally.lost)}" if lost else ""))
    print("status: " + ", ".join(f"{k}={v}" for k, v in sorted(tally.statuses.items())))
    if args.keep_alive:
        print(f"retried on a new connection after an idle close: {tally.retried}")
    print(f"tracebacks logged: {tracebacks}, 'Unhandled exception' lines: {unhandled}")
    p50, p99 = percentile(tally.latencies, 0.50), percentile(tally.latencies, 0.99)
    print(f"latency: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    print(f"throughput: {answered / elapsed:.0f} requests/s over {elapsed:.1f} s")
    return 1 if lost or tracebacks or unhandled else 0


def _run(coro):  # type: ignore[no-untyped-def]
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


if __name__ == "__main__":
    sys.exit(main())
