"""Benchmark: the capture listener under a flood of hostile sessions while real probes arrive.

    .venv/bin/python bench/capture_flood.py [--hostile 100] [--probes 40] [--old]

Starts one capture listener with the shipped ``[capture]`` defaults (100 connections, 20 per
peer, 25 reserved for the on-prem servers, a 5 s read timeout for other peers under stress) on
loopback.  ``--hostile`` sessions come from five other loopback addresses (127.0.0.2-6): half
send a NOOP every second (slow, never idle), half say nothing after the greeting (idle).  While
they hold, ``--probes`` probe messages with valid tokens are sent from 127.0.0.1 (the address of
a configured endpoint), a few at a time, each retried as an MTA would once after a 421.

After the probes the flood goes on for ``--hold`` seconds (7) to count the sessions the
listener cuts (idle ones, by the stress timeout).  ``--old`` runs the same flood against the
admission of the previous release (no reserved connections, no stress timeout) for the
before/after figures.  It prints probes delivered, the
median and worst delivery time, the hostile sessions admitted and refused, and the process's
peak RSS and open file descriptors.  Loopback only; bounded in time (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiosmtplib  # noqa: E402

from monitor.capture.certs import listener_files  # noqa: E402
from monitor.capture.dialogue import Limits  # noqa: E402
from monitor.capture.listener import CaptureListener  # noqa: E402
from monitor.capture.options import ListenerSettings  # noqa: E402
from monitor.capture.tls import server_context  # noqa: E402
from monitor.capture.tokens import Kind, TokenKeys  # noqa: E402

DOMAIN = "probe.bench.test"


def settings(state: Path, old: bool) -> ListenerSettings:
    cert, key = listener_files(None, None, state, "capture.bench.test")
    return ListenerSettings(
        addresses=(("127.0.0.1", 0),),
        hostname="capture.bench.test",
        domains=frozenset({DOMAIN}),
        ctx=server_context(cert, key),
        limits=Limits(timeout=30.0),
        session_timeout=300.0,
        max_connections=100,
        max_per_peer=20,
        rate_per_peer=120,
        keys=TokenKeys(os.urandom(32), timedelta(hours=1)),
        reserved=0 if old else 25,
        stress_timeout=30.0 if old else 5.0,
    )


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def hostile(port: int, index: int, stop: asyncio.Event, counts: dict[str, int]) -> None:
    address = f"127.0.0.{2 + index % 5}"
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
    except OSError:
        counts["connect_failed"] += 1
        return
    try:
        try:
            greeting = await asyncio.wait_for(reader.readline(), 5)
        except (OSError, TimeoutError):
            counts["connect_failed"] += 1
            return
        if not greeting.startswith(b"220"):
            counts["refused"] += 1
            return
        counts["admitted"] += 1
        while not stop.is_set():
            if index % 2 == 0:  # slow: a NOOP a second
                writer.write(b"NOOP\r\n")
                await writer.drain()
                if not await asyncio.wait_for(reader.readline(), 5):
                    counts["cut"] += 1
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1)
            else:  # idle: waits to be cut
                if not await reader.read(1024):
                    counts["cut"] += 1
                    return
    except (OSError, TimeoutError):
        counts["cut"] += 1
    finally:
        writer.transport.abort()


async def probe(listener: CaptureListener, port: int) -> float | None:
    """One probe message with its own token; seconds until it arrived, or ``None``."""
    token = listener.settings.keys.issue(Kind.CHECK, "bench", datetime.now(UTC))
    arrival = listener.expect(token)
    started = time.monotonic()
    try:
        for attempt in range(2):  # an MTA retries a 421 later; here once, 2 s later
            smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10, start_tls=False)
            try:
                await smtp.connect(source_address=("127.0.0.1", 0))
                await smtp.sendmail(
                    "relay@bench.test", [f"rc-{token}@{DOMAIN}"], "Subject: p\r\n\r\nx"
                )
                await smtp.quit()
                break
            except (aiosmtplib.SMTPException, OSError):
                smtp.close()
                if attempt == 0:
                    await asyncio.sleep(2)
        try:
            await asyncio.wait_for(asyncio.shield(arrival), 10)
        except TimeoutError:
            return None
        return time.monotonic() - started
    finally:
        listener.forget(token)


async def run(hostile_count: int, probes: int, old: bool, hold: float) -> None:
    with tempfile.TemporaryDirectory() as state:
        listener = CaptureListener(settings(Path(state), old), known=["127.0.0.1"])
        await listener.start()
        port = listener.port()
        fds_before = open_fds()
        stop = asyncio.Event()
        counts = dict.fromkeys(("admitted", "refused", "cut", "connect_failed"), 0)
        flood = [asyncio.create_task(hostile(port, i, stop, counts)) for i in range(hostile_count)]
        await asyncio.sleep(1.5)  # the flood holds every slot it can get
        peak_fds = open_fds()
        times: list[float | None] = []
        began = time.monotonic()
        for start in range(0, probes, 4):  # four in flight, like a few relays
            batch = [probe(listener, port) for _ in range(min(4, probes - start))]
            times.extend(await asyncio.gather(*batch))
            peak_fds = max(peak_fds, open_fds())
        took = time.monotonic() - began
        await asyncio.sleep(hold)  # the flood goes on: how many does the listener cut?
        cut = counts["cut"]
        stop.set()
        await asyncio.gather(*flood, return_exceptions=True)
        await listener.close()
    delivered = [t for t in times if t is not None]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    label = "previous admission (--old)" if old else "this release"
    print(f"capture listener under {hostile_count} hostile sessions, {label}")
    print(f"probes delivered        {len(delivered)} of {probes} (in {took:.1f} s)")
    if delivered:
        print(
            f"delivery median / max   {statistics.median(delivered):.2f} s / {max(delivered):.2f} s"
        )
    print(
        f"hostile sessions        admitted {counts['admitted']}, refused {counts['refused']}, "
        f"no greeting {counts['connect_failed']}, cut by the listener within {hold:g} s "
        f"after the probes {cut}"
    )
    print(f"open FDs                {fds_before} before, {peak_fds} peak")
    print(f"peak RSS                {rss:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hostile", type=int, default=100)
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--old", action="store_true", help="the previous release's admission")
    parser.add_argument("--hold", type=float, default=7.0, help="seconds the flood goes on after")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4096)), hard))
    asyncio.run(run(args.hostile, args.probes, args.old, args.hold))


if __name__ == "__main__":
    main()
