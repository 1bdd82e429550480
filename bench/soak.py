"""Soak: several ``relaycert run`` instances on one PostgreSQL, with faults on a schedule.

    .venv/bin/python bench/soak.py [--minutes 20] [--endpoints 300] [--instances 3]
    .venv/bin/python bench/soak.py --short        # about a minute; the test suite runs this

A few hundred endpoints on loopback SMTP servers (aiosmtpd) whose certificates change during
the run (two servers go to a certificate for another domain and back: alerts open and
resolve), a webhook sink, and these faults, at fixed shares of the run:

    20%  kill -9 of instance 0 (restarted at 25%)
    40%  PostgreSQL restarted (pg_ctlcluster; skipped, and said so, where it cannot run)
         (--sqlite-disk-full instead: one instance on SQLite on a 32 MB tmpfs, filled to the
         last byte from 30% to 45%)
    60%  the sink answers 500 ...
    70%  ... then does not answer at all (the channel times out) until 80%

then the sink answers again and the run drains until every outbox message is sent (at most two
more minutes).  It prints, per fault window: probe gaps (an endpoint not probed for more than two
intervals and the jitter) and doubles (probed twice within half an interval); probe runs lost
to database errors; alerts sent against alerts received, by outbox key (not by count); duplicate
deliveries against the documented bound (a message is delivered twice only when its instance
dies between the channel's answer and recording it: at most one claimed batch per kill); RSS and
open file descriptors of the instances that ran throughout, from a quarter of the run to its end.

Targets: 0 runs lost to database errors, 0 alerts lost, duplicates within the bound, RSS growth
under 10% over a 20-minute run (the short run prints RSS but does not judge it: a minute is
mostly warm-up).  Exit status 1 when a target is missed.  Network traffic: loopback only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from monitor.demo import pki  # noqa: E402
from monitor.demo.servers import LoopbackSMTP  # noqa: E402

PG = os.environ.get("RELAYCERT_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SERVERS = 8
CLAIM_BATCH = 100  # monitor/alerts/outbox.py: messages one instance claims per round


class Sink:
    """A webhook receiver on loopback: ``mode`` is ``ok``, ``500`` or ``hang``.  A delivery
    counts only when it was answered 200 (a hung request the sender gave up on is not one)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.delivered: Counter[str] = Counter()
        self.requests = 0
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with sink.lock:
                    sink.requests += 1
                    mode = sink.mode
                if mode == "hang":
                    time.sleep(8)  # past the channel's timeout: the sender gives up
                    return
                if mode == "500":
                    self.send_response(500)
                    self.end_headers()
                    return
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")
                self.wfile.flush()
                key = json.loads(body).get("key", "?")
                with sink.lock:
                    sink.delivered[key] += 1

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Instance:
    number: int
    config: Path
    log: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (t, rss kB, fds)

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "monitor", "run", "--config", str(self.config)],
                cwd=ROOT,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def sample(self, at: float) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
            rss = int(
                next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]
            )
            fds = len(os.listdir(f"/proc/{self.process.pid}/fd"))
        except (OSError, StopIteration, ValueError):
            return
        self.samples.append((at, rss, fds))


def config_text(
    endpoints: int, ports: list[int], url: str, number: int, interval: int, folder: Path
) -> str:
    lines = [
        '[tenant]\nname = "Contoso"\naccepted_domains = ["contoso.com"]\n',
        '[[connectors]]\nname = "relay"\ntls_sender_certificate_name = "*.contoso.com"\n',
        f'[trust]\nuse_certifi = false\nextra_ca_files = ["{folder / "root.pem"}"]\n',
        '[probe]\ntimeout = "3s"\n',
        f'[database]\nurl = "{url}"\n',
        f'[instance]\nname = "soak-{number}"\nheartbeat = "2s"\n',
        f'[daemon]\ninterval = "{interval}s"\njitter = "1s"\noutbox_interval = "1s"\n'
        'outbox_lease = "5s"\nretry_base = "1s"\nshutdown_grace = "5s"\nlog_format = "json"\n',
        "[alerts]\npersist = 1\n",
        '[[channels]]\nname = "sink"\ntype = "webhook"\nurl_env = "SOAK_SINK_URL"\n'
        'timeout = "2s"\n',
    ]
    for i in range(endpoints):
        lines.append(
            f'[[endpoints]]\nname = "e{i:04d}"\nhost = "mail{i}.contoso.com"\n'
            f'port = {ports[i % len(ports)]}\nmode = "starttls"\nconnector = "relay"\n'
            'addresses = ["127.0.0.1"]\n'
        )
    return "\n".join(lines)


def restart_postgresql() -> str:
    """Restart the local cluster; returns what was done."""
    tool = shutil.which("pg_ctlcluster")
    clusters = sorted(os.listdir("/etc/postgresql")) if Path("/etc/postgresql").is_dir() else []
    if tool is None or not clusters or os.geteuid() != 0:
        return "skipped (needs root and pg_ctlcluster)"
    started = time.monotonic()
    done = subprocess.run(
        [tool, "--skip-systemctl-redirect", clusters[-1], "main", "restart", "-m", "fast"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        return f"failed: {done.stderr.strip()[:200]}"
    return f"restarted in {time.monotonic() - started:.1f}s"


def fill(disk: Path) -> Path:
    """Fill ``disk`` to its last byte; the file returned holds the space."""
    filler = disk / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def events(log: Path) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--endpoints", type=int, default=300)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--interval", type=int, default=30, help="probe interval, seconds")
    parser.add_argument("--short", action="store_true", help="about a minute (the test's run)")
    parser.add_argument(
        "--sqlite-disk-full",
        action="store_true",
        help="one instance on SQLite on a small tmpfs that fills up (root)",
    )
    args = parser.parse_args()
    if args.short:
        args.minutes, args.endpoints, args.instances, args.interval = 1.0, 40, 2, 10
    if args.sqlite_disk_full:
        args.instances = 1
    duration = args.minutes * 60

    folder = Path(tempfile.mkdtemp(prefix="relaycert-soak-"))
    schema = f"soak_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG, pool_pre_ping=True)  # its connection outlives the restart
    disk = folder / "disk"
    if args.sqlite_disk_full:
        if os.geteuid() != 0:
            print("--sqlite-disk-full mounts a small tmpfs: run it as root")
            return 2
        disk.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(disk)], check=True)
        url = f"sqlite:///{disk / 'relaycert.db'}"
        where = f"SQLite on a 32 MB tmpfs ({disk})"
    else:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        url = f"{PG}?options=-csearch_path%3D{schema}"
        where = f"PostgreSQL schema {schema}"
    root = pki.make_ca("relaycert soak root")
    (folder / "root.pem").write_bytes(root.cert_pem())
    good = pki.write_chain(folder / "good", "good", pki.make_leaf(root, ["*.contoso.com"]))
    wrong = pki.write_chain(folder / "wrong", "wrong", pki.make_leaf(root, ["mail.fabrikam.test"]))
    servers = [LoopbackSMTP("starttls", *good).start() for _ in range(SERVERS)]
    sink = Sink()
    env = {**os.environ, "SOAK_SINK_URL": sink.url, "PYTHONPATH": str(ROOT)}
    instances = []
    for number in range(args.instances):
        config = folder / f"instance-{number}.toml"
        config.write_text(
            config_text(
                args.endpoints, [s.port for s in servers], url, number, args.interval, folder
            )
        )
        instances.append(Instance(number, config, folder / f"instance-{number}.log", env))

    def serve_certificate(index: int, chain: tuple[Path, Path]) -> None:
        context = servers[index]._controller.SMTP_kwargs["tls_context"]
        context.load_cert_chain(chain[1], chain[0])

    windows: list[tuple[str, float, float, str]] = []  # (fault, from, to, detail) in seconds
    database_faults = [
        (0.20, "kill -9 instance 0"),
        (0.25, "instance 0 restarted"),
        (0.40, "PostgreSQL restart"),
    ]
    if args.sqlite_disk_full:
        database_faults = [(0.30, "disk full"), (0.45, "disk has room again")]
    schedule: list[tuple[float, str]] = [
        (0.15, "certificates: servers 0-1 serve a certificate for another domain"),
        *database_faults,
        (0.50, "certificates: servers 0-1 back"),
        (0.60, "sink answers 500"),
        (0.62, "certificates: server 2 for another domain"),
        (0.70, "sink does not answer"),
        (0.72, "certificates: server 2 back"),
        (0.80, "sink answers again"),
    ]
    print(
        f"soak: {args.instances} instances, {args.endpoints} endpoints on {SERVERS} servers, "
        f"interval {args.interval}s, {duration:.0f}s, {where}",
        flush=True,
    )
    start = time.monotonic()
    for instance in instances:
        instance.start()
    next_sample = [0.0]

    def wait_until(moment: float) -> None:
        """Sleep until ``moment`` seconds into the run, sampling the instances every 2 s."""
        while (now := time.monotonic() - start) < moment:
            if now >= next_sample[0]:
                for instance in instances:
                    instance.sample(now)
                next_sample[0] = now + 2
            time.sleep(0.2)

    try:
        for share, what in schedule:
            wait_until(share * duration)
            at = time.monotonic() - start
            detail = ""
            if what.startswith("kill"):
                instances[0].kill()
            elif what.startswith("instance 0 restarted"):
                instances[0].start()
            elif what.startswith("PostgreSQL"):
                detail = restart_postgresql()
            elif what == "disk full":
                filler = fill(disk)
                detail = f"{filler.stat().st_size // 1024} KB filler"
            elif what == "disk has room again":
                (disk / "filler").unlink()
            elif what.startswith("sink answers 500"):
                sink.mode = "500"
            elif what.startswith("sink does not answer"):
                sink.mode = "hang"
            elif what.startswith("sink answers again"):
                sink.mode = "ok"
            elif "servers 0-1 serve" in what:
                serve_certificate(0, wrong)
                serve_certificate(1, wrong)
            elif "servers 0-1 back" in what:
                serve_certificate(0, good)
                serve_certificate(1, good)
            elif "server 2 for" in what:
                serve_certificate(2, wrong)
            elif "server 2 back" in what:
                serve_certificate(2, good)
            windows.append((what, at, at, detail))
            print(f"  {at:6.1f}s  {what}{': ' + detail if detail else ''}", flush=True)
        wait_until(duration)
        measured_until = time.monotonic() - start
        store = create_engine(url, pool_pre_ping=True)
        drain_until = time.monotonic() + 120
        while time.monotonic() < drain_until:
            with store.connect() as conn:
                pending = conn.execute(
                    text("SELECT count(*) FROM outbox WHERE status = 'pending'")
                ).scalar()
            if not pending:
                break
            time.sleep(1)
        drained = time.monotonic() - start - measured_until
    finally:
        for instance in instances:
            instance.stop()
        for server in servers:
            server.stop()
        sink.close()

    with store.connect() as conn:
        outbox = conn.execute(text("SELECT dedup_key, status FROM outbox")).all()
        attempts = conn.execute(text("SELECT coalesce(sum(attempts), 0) FROM probe_day")).scalar()
    store.dispose()
    if args.sqlite_disk_full:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    else:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()

    # -- what the instances logged ------------------------------------------------------------
    done: dict[str, list[float]] = defaultdict(list)
    lost_to_db: list[str] = []
    other_writes: list[str] = []
    retries = kept = dropped = written_later = 0
    epoch: float | None = None
    for instance in instances:
        for item in events(instance.log):
            when = datetime.fromisoformat(item["ts"]).timestamp()
            if item["event"] == "probe.done" and item.get("direction", "from") != "to":
                done[item["endpoint"]].append(when)
                epoch = when if epoch is None else min(epoch, when)
            elif item["event"] == "store.retry":
                retries += 1
            elif item["event"] == "store.unstored":
                kept += 1
                dropped += int(item.get("dropped", 0))
            elif item["event"] == "store.unstored_written":
                written_later += int(item.get("results", 0))
            elif item["event"].endswith(".error") and "nothing of this run was stored" in str(
                item.get("error", "")
            ):
                lost = f"instance {instance.number}: {item['error'][:160]}"
                if "storing the scan failed" in item["error"]:
                    lost_to_db.append(lost)
                else:  # a claim, an outbox round: done again at the next round
                    other_writes.append(lost)
    epoch = epoch or 0.0
    limit_gap = 2 * args.interval + 1 + 3  # two intervals, the jitter, the probe timeout
    gaps: list[tuple[str, float, float]] = []
    doubles: list[tuple[str, float]] = []
    for endpoint, times in done.items():
        times.sort()
        for before, after in itertools.pairwise(times):
            if after - before > limit_gap:
                gaps.append((endpoint, before - epoch, after - before))
            elif after - before < args.interval / 2:
                doubles.append((endpoint, after - epoch))
    probes = sum(len(t) for t in done.values())

    def window_of(at: float) -> str:
        name = "(before any fault)"
        for what, when, _, _ in windows:
            if when <= at:
                name = what
        return name

    print("\nper fault window (from the fault to the next):")
    # a gap belongs to the last fault before it ended (the one that caused it)
    per_gap = Counter(window_of(at + length) for _, at, length in gaps)
    per_double = Counter(window_of(at) for _, at in doubles)
    for what, when, _, _ in [("(before any fault)", 0.0, 0.0, ""), *windows]:
        print(f"  {when:6.1f}s  {what:<64} gaps {per_gap[what]:4d}  doubles {per_double[what]:4d}")

    sent = {key for key, status in outbox if status == "sent"}
    every = {key for key, _ in outbox}
    received = set(sink.delivered)
    lost_alerts = sorted(every - received)
    duplicates = sum(n - 1 for n in sink.delivered.values() if n > 1)
    kills = sum(1 for what, *_ in windows if what.startswith("kill"))
    bound = kills * CLAIM_BATCH
    print(f"\nprobes done: {probes} of {args.endpoints} endpoints; stored (probe_day): {attempts}")
    longest = max((length for *_, length in gaps), default=0.0)
    print(f"probe gaps: {len(gaps)} (longest {longest:.0f}s; a gap is over {limit_gap}s)")
    print(f"probe runs lost to database errors: {len(lost_to_db)}; store retries: {retries}")
    print(
        f"batches kept in memory while the store could not take them: {kept}; results stored "
        f"later: {written_later}; dropped: {dropped}"
    )
    for line in lost_to_db[:5]:
        print(f"    {line}")
    print(f"other writes failed (claims, outbox rounds; redone next round): {len(other_writes)}")
    for line in other_writes[:5]:
        print(f"    {line}")
    print(
        f"alerts: {len(every)} messages in the outbox ({len(sent)} sent), {len(received)} "
        f"received by key, {len(lost_alerts)} lost; sink requests {sink.requests}; "
        f"drained in {drained:.0f}s"
    )
    for key in lost_alerts[:5]:
        print(f"    lost: {key}")
    print(f"duplicate deliveries: {duplicates} (bound: {kills} kill(s) x {CLAIM_BATCH} = {bound})")
    growth: list[float] = []
    for instance in instances:
        if instance.starts != 1:
            continue
        steady = [s for s in instance.samples if s[0] >= 0.25 * duration]
        if len(steady) < 2:
            continue
        (_, rss0, fd0), (_, rss1, fd1) = steady[0], steady[-1]
        change = 100 * (rss1 - rss0) / rss0
        growth.append(change)
        quarters = [steady[min(len(steady) - 1, len(steady) * q // 4)] for q in range(1, 4)]
        along = ", ".join(f"{t:.0f}s {rss / 1024:.1f}" for t, rss, _ in quarters)
        print(
            f"instance {instance.number}: RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MB "
            f"({change:+.1f}%; along the way {along}), FDs {fd0} -> {fd1}"
        )
    failed = []
    if lost_to_db or dropped:
        failed.append("probe runs lost to database errors")
    if attempts < probes:
        failed.append("probes done but not stored")
    if lost_alerts:
        failed.append("alerts lost")
    if duplicates > bound:
        failed.append("duplicates over the bound")
    if not every:
        failed.append("no alert was raised (the certificate changes did not reach the sink)")
    if not args.short and any(g >= 10 for g in growth):
        failed.append("RSS grew 10% or more")
    shutil.rmtree(folder, ignore_errors=True)
    print("targets:", "met" if not failed else "MISSED: " + "; ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
