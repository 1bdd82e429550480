"""Benchmark: the daemon watching N endpoint addresses on loopback on a fixed schedule.

    .venv/bin/python bench/daemon.py [--addresses 2000] [--interval 300] [--duration 360]

Runs ``relaycert run``'s daemon in this process against one real server (Postfix when
installed, else aiosmtpd), in a private loopback-only network namespace when root (distinct
addresses), and prints: the lag between each probe's due time and its start (p50, p99, max),
probes done, peak RSS, and CPU used while no probe was due (idle CPU).  Targets for 2000
addresses every 5 minutes on a 2-core machine: p99 lag < 5 s, RSS < 200 MB, idle CPU near zero;
for 20 000 addresses (issue 15): p99 lag < 5 s, RSS < 400 MB.

20 000 addresses every 5 minutes, 360 s (2-core development machine):

    before   4555 probes done of 22347 started   p99 lag 123.4 s   peak RSS 560 MB
    after   22905 probes done of 22927 started   p99 lag   1.3 s   peak RSS 220 MB
    again   23021 probes done of 23033 started   p99 lag   2.5 s   peak RSS 248 MB
            (session 2, the probe on its own connection; the machine ~10% slower that day)
    again   22975 probes done of 22984 started   p99 lag   0.24 s  peak RSS 249 MB
            (session 3: the store's Core writes and one-join baselines read)

Before, first runs were spread over the jitter (30 s: a burst of ~670 probes a second) and every
endpoint job had its own read and write transaction, which SQLite could not keep up with at ~70
jobs a second: the backlog grew (and memory with it).  After: first runs of a large fleet are
spread over about `concurrency` endpoints a second within one interval, and jobs finishing
within 0.2 s are stored together (monitor/pipeline/batching.py); SQLite runs WAL with
synchronous=NORMAL.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scan import (  # noqa: E402
    addresses,
    config_for,
    rerun_in_netns,
    server_chain,
    start_server,
)

from monitor import aio  # noqa: E402
from monitor.service.daemon import Daemon  # noqa: E402
from monitor.store.engine import Store  # noqa: E402


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


async def watch(
    daemon: Daemon, duration: float, interval: float, jitter: float, spread: float
) -> dict[str, float]:
    """Serve for ``duration``; sample CPU in a window where no probe is due."""
    serve = asyncio.create_task(daemon.serve())  # the daemon's own first-run spread
    started = time.monotonic()
    idle = {"cpu": float("nan"), "seconds": 0.0}
    # First runs end by ``spread`` (+ probe time); the next ones start at interval - jitter.
    idle_from, idle_to = spread + 15, interval - jitter - 5
    if idle_to - idle_from >= 10 and idle_to < duration:
        await asyncio.sleep(idle_from)
        probes, cpu = daemon.probes, time.process_time()
        await asyncio.sleep(idle_to - idle_from)
        if daemon.probes == probes:
            idle = {"cpu": time.process_time() - cpu, "seconds": idle_to - idle_from}
    await asyncio.sleep(max(0.0, duration - (time.monotonic() - started)))
    daemon.stopping.set()
    await serve
    return idle


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addresses", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=300, help="seconds")
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds (default: one interval and a minute)"
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    duration = args.duration or args.interval + 60

    if not args.in_netns:
        code = rerun_in_netns()
        if code is not None:
            return code

    logging.getLogger("relaycert").setLevel(logging.WARNING)
    kind = "postfix" if Path("/usr/lib/postfix/sbin/master").exists() else "aiosmtpd"
    folder = Path(tempfile.mkdtemp(prefix="relaycert-bench-daemon-"))
    key, chain = server_chain(folder)
    targets = addresses(args.addresses, distinct=args.in_netns)
    jitter = min(args.interval / 10, 300)
    # The daemon's own first-run spread (monitor/service/jobs/endpoints.py): the jitter, or about
    # `concurrency` endpoints a second for a large fleet, within one interval.
    spread = min(max(jitter, args.addresses / args.concurrency), args.interval)
    server = start_server(kind, key, chain, args.in_netns, args.concurrency * 2)
    try:
        extra = f'[daemon]\ninterval = {args.interval}\njitter = {jitter}\nlog_level = "warning"\n'
        config = config_for(targets, server.port, args.concurrency, folder, extra)
        store = Store.open(config.database_url())  # type: ignore[attr-defined]
        daemon = Daemon(folder / "relaycert.toml", store, config)  # type: ignore[arg-type]
        idle = aio.run(watch(daemon, duration, args.interval, jitter, spread))
        store.close()
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)

    lags = list(daemon.lags)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"server: {kind}; addresses: {args.addresses}; interval: {args.interval:g}s "
        f"(jitter {jitter:g}s, first runs over {spread:g}s); ran {duration:g}s"
    )
    print(f"probes: {daemon.probes}; scheduled runs: {len(lags)}")
    print(
        f"lag due->start: p50 {statistics.median(lags) if lags else float('nan'):.3f}s  "
        f"p99 {percentile(lags, 0.99):.3f}s  max {max(lags, default=float('nan')):.3f}s"
    )
    print(f"peak RSS: {rss:.1f} MB")
    if idle["seconds"]:
        print(
            f"idle CPU: {idle['cpu']:.3f} s over {idle['seconds']:.0f} s with no probe due "
            f"({100 * idle['cpu'] / idle['seconds']:.2f}% of one core)"
        )
    else:
        print("idle CPU: not measured (no idle window in this run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
