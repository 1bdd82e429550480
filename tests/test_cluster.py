"""Several ``relaycert run`` instances on one PostgreSQL store (docs/architecture.md, "Several
instances"): three daemons as subprocesses probing loopback SMTP servers that count every
connection; one killed with SIGKILL, a rolling restart; sites; renewals ordered once; a second
instance refused on SQLite."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from checks.base import Severity
from monitor.config.loader import load
from monitor.service.membership import tolerance
from monitor.store.engine import Store

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
INTERVAL, JITTER, HEARTBEAT = 4.0, 0.5, 1.0
MONITOR = [sys.executable, "-m", "monitor"]


class Counting(socketserver.ThreadingTCPServer):
    """A plain SMTP listener without STARTTLS: each probe is exactly one connection, and every
    connection's time is recorded."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Session)
        self.times: list[float] = []
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Session(socketserver.StreamRequestHandler):
    timeout = 5

    def handle(self) -> None:
        server = self.server
        assert isinstance(server, Counting)
        with server.lock:
            server.times.append(time.monotonic())
        self.wfile.write(b"220 count.test ESMTP\r\n")
        for line in self.rfile:
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.wfile.write(b"250-count.test\r\n250 SIZE 1000000\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def servers() -> Iterator[list[Counting]]:
    started = [Counting() for _ in range(6)]
    yield started
    for server in started:
        server.shutdown()
        server.server_close()


def write_config(
    path: Path,
    url: str,
    servers: list[Counting],
    name: str,
    site: str | None,
    sites: list[str | None],
) -> Path:
    endpoints = "".join(
        f'[[endpoints]]\nname = "e{i}"\nhost = "mail{i}.contoso.com"\nport = {s.port}\n'
        f'mode = "starttls"\nconnector = "relay"\naddresses = ["127.0.0.1"]\n'
        + (f'site = "{sites[i]}"\n' if sites[i] else "")
        for i, s in enumerate(servers)
    )
    path.write_text(
        '[tenant]\naccepted_domains = ["contoso.com"]\n'
        '[[connectors]]\nname = "relay"\ntls_sender_certificate_name = "*.contoso.com"\n'
        f'[database]\nurl = "{url}"\n'
        f"[daemon]\ninterval = {INTERVAL}\njitter = {JITTER}\noutbox_interval = 1\n"
        'log_level = "info"\nshutdown_grace = 2\n'
        f'[instance]\nname = "{name}"\nheartbeat = {HEARTBEAT}\n'
        + (f'site = "{site}"\n' if site else "")
        + '[probe]\ntimeout = "2s"\n'
        f'[[channels]]\nname = "capture"\ntype = "file"\npath = "{path.parent / "alerts.jsonl"}"\n'
        + endpoints
    )
    return path


class Instance:
    def __init__(self, config: Path, log: Path) -> None:
        self.log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(config)],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(15)
        self.log.close()


def relaycert(*args: str) -> subprocess.CompletedProcess[str]:
    """A relaycert command in its own process; its output captured."""
    return subprocess.run([*MONITOR, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def gaps(times: list[float], start: float, end: float) -> list[float]:
    seen = [t for t in times if start <= t <= end]
    return [b - a for a, b in itertools.pairwise(seen)]


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_three_instances_steady_state_kill_and_rolling_restart(
    store_url: str, servers: list[Counting], tmp_path: Path
) -> None:
    configs = [
        write_config(tmp_path / f"i{n}.toml", store_url, servers, f"i{n}", None, [None] * 6)
        for n in range(3)
    ]
    # No store opened first: the three instances migrate the empty schema at once.
    instances = [Instance(c, tmp_path / f"i{n}.log") for n, c in enumerate(configs)]
    least = INTERVAL - tolerance_s()  # the closest two claims of one endpoint can be
    most = INTERVAL + JITTER + 1.0  # the furthest apart while every instance is alive
    try:
        time.sleep(2 * INTERVAL)  # start-up and first runs
        steady_from = time.monotonic()
        time.sleep(3 * INTERVAL)
        steady_to = time.monotonic()
        for server in servers:
            spaced = gaps(server.times, steady_from - INTERVAL, steady_to)
            assert spaced and min(spaced) >= least - 0.2, (spaced, least)  # never twice
            assert max(spaced) <= most, (spaced, most)  # never skipped
        logs = [(tmp_path / f"i{n}.log").read_text() for n in range(3)]
        assert sum("probe.done" in log for log in logs) >= 2, "work is shared"

        # SIGKILL the instance that probed last: its endpoints resume within one interval.
        last = max(range(3), key=lambda n: logs[n].rfind("probe.done"))
        instances[last].stop(signal.SIGKILL)
        killed_at = time.monotonic()
        time.sleep(3 * INTERVAL)
        failover = 2 * INTERVAL + JITTER + 1.0  # documented: one interval plus the failover
        for server in servers:
            assert gaps(server.times, killed_at - 2 * INTERVAL, time.monotonic())
            assert max(gaps(server.times, killed_at - 2 * INTERVAL, time.monotonic())) <= failover

        # Rolling restart of the two survivors, one at a time: probing never stops.
        rolling_from = time.monotonic()
        for n in range(3):
            if n == last:
                continue
            instances[n].stop()
            instances[n] = Instance(configs[n], tmp_path / f"i{n}.log")
            time.sleep(INTERVAL)
        time.sleep(INTERVAL)
        # A restarted instance takes its start-up (about a second, more on a loaded CI machine)
        # before it claims again: the bound allows that beside the failover.
        restarting = failover + 1.5
        for server in servers:
            spaced = gaps(server.times, rolling_from - 2 * INTERVAL, time.monotonic())
            assert spaced and max(spaced) <= restarting and min(spaced) >= least - 0.2, spaced

        # Status lists every instance, live or not.
        status = relaycert("status", "--config", str(configs[0]), "--format", "json")
        doc = json.loads(status.stdout)
        states = sorted((i["name"], i["state"]) for i in doc["instances"])
        killed = f"i{last}"
        assert (killed, "dead") in states, states
        assert sum(state == "live" for _, state in states) == 2, states
        assert sum(state == "stopped" for _, state in states) == 2, states
        assert doc["unwatched_sites"] == []
    finally:
        for instance in instances:
            instance.stop()
    # Each endpoint's alert (no STARTTLS) was sent, and at most once more than once: a copy
    # only when the instance delivering it died between the channel's answer and the store.
    sent = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    opened = [a["endpoint"] for a in sent if a["rule"] == "tls.starttls_missing"]
    assert sorted(set(opened)) == [f"e{i}" for i in range(6)], opened
    assert len(opened) - 6 <= 1, opened


def tolerance_s() -> float:
    from datetime import timedelta

    return tolerance(timedelta(seconds=INTERVAL), timedelta(seconds=JITTER)).total_seconds()


async def test_site_without_an_instance_alerts_and_is_not_probed_elsewhere(
    store_url: str, servers: list[Counting], tmp_path: Path
) -> None:
    from monitor.service.daemon import Daemon

    sites: list[str | None] = ["dmz", None, None, None, None, "hq"]
    path = write_config(tmp_path / "hq.toml", store_url, servers, "hq-1", "hq", sites)
    config = load(path)
    store = Store.open(store_url)
    daemon = Daemon(path, store, config)
    try:
        assert [e.name for e in daemon.jobs.mine(config)] == ["e1", "e2", "e3", "e4", "e5"]
        await daemon.membership.start()
        await daemon.membership.heartbeat(config, daemon.gen.tracking)
        await daemon.run_once()
        assert servers[0].times == []  # the DMZ endpoint is left to DMZ instances
        assert all(len(s.times) == 1 for s in servers[1:])
    finally:
        store.close()
    sent = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    (alert,) = [a for a in sent if a["rule"] == "cluster.site_unwatched"]
    assert alert["severity"] == Severity.CRITICAL.value
    assert "site 'dmz'" in alert["message"] and "e0" in alert["message"]
    status = await asyncio.to_thread(relaycert, "status", "--config", str(path), "--format", "json")
    assert status.returncode == 2
    doc = json.loads(status.stdout)
    (row,) = [r for r in doc["addresses"] if r["endpoint"] == "(sites)"]
    assert row["worst_finding"] == "critical" and row["worst_rule"] == "cluster.site_unwatched"
    if store_url.startswith("postgresql"):  # instances register in a shared store only
        assert [i["name"] for i in doc["instances"]] == ["hq-1"]
        assert doc["instances"][0]["site"] == "hq"
        assert len(doc["unwatched_sites"]) == 1 and "e0" in doc["unwatched_sites"][0]


def test_second_instance_on_sqlite_is_refused(servers: list[Counting], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'relaycert.db'}"
    path = write_config(tmp_path / "one.toml", url, servers, "one", None, [None] * 6)
    first = Instance(path, tmp_path / "one.log")
    try:
        deadline = time.monotonic() + 30
        while "daemon.started" not in (tmp_path / "one.log").read_text():
            assert time.monotonic() < deadline and first.process.poll() is None
            time.sleep(0.2)
        second = relaycert("run", "--config", str(path))
        assert second.returncode == 3
        error = second.stderr.strip()
        assert len(error.splitlines()) == 1, error
        assert f"pid {first.process.pid}" in error and "PostgreSQL" in error
        assert first.process.poll() is None  # the first one is untouched
    finally:
        first.stop()


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
async def test_concurrent_renewals_order_once(store_url, pebble, tmp_path, root_ca) -> None:  # type: ignore[no-untyped-def]
    """Two instances (two stores, two PostgreSQL sessions) renewing the same certificate at the
    same moment: one orders, the other is told another instance is renewing."""
    from monitor.demo.pebble import free_port
    from monitor.renewal.outcome import Result
    from monitor.renewal.runner import renew
    from monitor.store.reads import renewal
    from tests.test_renewal import renewal_config

    path = renewal_config(
        tmp_path,
        pebble,
        root_ca,
        free_port(),
        ["mail1.contoso.test"],
        extra=f'[database]\nurl = "{store_url}"\n',
    )
    config = load(path)
    one, two = Store.open(store_url), Store.open(store_url)
    try:
        settings = config.renewals[0]
        outcomes = await asyncio.gather(
            renew(config, one, settings, force=True, dry_run=True),
            renew(config, two, settings, force=True, dry_run=True),
        )
        attempts = renewal.renewals(one, None, 8, settings.name)
    finally:
        one.close()
        two.close()
    results = sorted(o.outcome for o in outcomes)
    assert results == sorted([Result.DRY_RUN, Result.SKIPPED]), outcomes
    (skipped,) = [o for o in outcomes if o.outcome is Result.SKIPPED]
    assert "another instance" in skipped.detail
    assert [a.outcome for a in attempts] == ["dry_run"]  # one order, one attempt recorded
