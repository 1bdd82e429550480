"""The outbox and the daemon process: a channel that is down for a while, a channel that says
400, a daemon killed with SIGKILL mid-delivery and restarted, SIGHUP with a bad config, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.config.loader import load
from monitor.demo import pki
from monitor.demo.servers import LoopbackSMTP
from monitor.service.daemon import Daemon
from monitor.store.engine import Store
from monitor.store.reads.status import status
from tests.conftest import endpoint_toml
from tests.httpreceiver import Receiver, http_receiver

ROOT = Path(__file__).parent.parent

DAEMON = """
[daemon]
interval = "1h"
jitter = "0s"
outbox_interval = "1s"
outbox_lease = "2s"
retry_base = "200ms"
shutdown_grace = "3s"

[[channels]]
name = "hook"
type = "webhook"
url_env = "RC_TEST_HOOK_URL"
timeout = "3s"
"""


@pytest.fixture
def fleet(smtp_server, write_chain, intermediate) -> list[LoopbackSMTP]:  # type: ignore[no-untyped-def]
    """Two endpoints that each open one alert: one expiring (warning), one leaf-only (critical)."""
    soon = pki.make_leaf(
        intermediate,
        ["mail1.contoso.com"],
        not_before=datetime.now(UTC) - timedelta(days=80),
        days=90,
    )
    alone = pki.make_leaf(intermediate, ["mail1.contoso.com"])
    return [
        smtp_server("starttls", *write_chain(soon, intermediate)),
        smtp_server("starttls", *write_chain(alone)),
    ]


@pytest.fixture
def daemon_config(fleet, config_file, monkeypatch) -> Callable[[Receiver], Path]:  # type: ignore[no-untyped-def]
    def make(receiver: Receiver) -> Path:
        monkeypatch.setenv("RC_TEST_HOOK_URL", receiver.url)
        return config_file(
            endpoint_toml("soon", fleet[0].port) + endpoint_toml("alone", fleet[1].port),
            extra=DAEMON,
        )

    return make


class SteppedClock:
    """The outbox's clock: real time plus whatever the test has advanced it by."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, step: timedelta) -> None:
        self.offset += step


async def cycle(config_path: Path, done: Callable[[], bool], rounds: int = 40) -> Store:
    """One daemon cycle, then outbox rounds until ``done()`` (and two more, to see repeats)."""
    config = load(config_path)
    store = Store.open(config.database_url())
    daemon = Daemon(config_path, store, config)
    clock = SteppedClock()
    daemon.jobs.outbox.clock = clock
    await daemon.run_once()
    extra = 2
    for _ in range(rounds):
        clock.advance(timedelta(minutes=1))  # past any retry backoff, without waiting for it
        await daemon.deliver()
        if done():
            extra -= 1
            if extra == 0:
                break
    return store


async def test_channel_down_for_a_while_then_everything_once(daemon_config) -> None:  # type: ignore[no-untyped-def]
    with http_receiver([503, 503, 503, 503]) as receiver:
        store = await cycle(daemon_config(receiver), lambda: len(receiver.accepted) >= 2)
    keys = [r["headers"]["Idempotency-Key"] for r in receiver.accepted]
    assert len(receiver.requests) >= 6  # 4 failures and the retries
    assert len(keys) == 2 and len(set(keys)) == 2
    assert sorted(b["rule"] for b in receiver.bodies()) == ["cert.expiring", "cert.untrusted"]
    _, failed = status(store, datetime.now(UTC))
    assert failed == []
    store.close()


async def test_permanent_error_is_marked_failed_not_retried(daemon_config) -> None:  # type: ignore[no-untyped-def]
    with http_receiver([400, 400]) as receiver:
        store = await cycle(daemon_config(receiver), lambda: len(receiver.requests) >= 2)
    assert len(receiver.requests) == 2 and receiver.accepted == []
    _, failed = status(store, datetime.now(UTC))
    assert len(failed) == 2 and all(
        m.attempts == 1 and "HTTP 400" in (m.error or "") for m in failed
    )
    store.close()


def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("ab") as stderr:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(config)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigkill_mid_delivery_loses_nothing_and_repeats_nothing(  # type: ignore[no-untyped-def]
    daemon_config, tmp_path, processes
) -> None:
    log = tmp_path / "daemon.log"
    with http_receiver() as receiver:
        receiver.hang = True
        config = daemon_config(receiver)
        first = start_daemon(config, log)
        processes.append(first)
        wait_for(lambda: len(receiver.requests) >= 1)  # a message is on the wire...
        first.send_signal(signal.SIGKILL)  # ...and the daemon dies before any answer
        first.wait()
        receiver.hang = False
        second = start_daemon(config, log)
        processes.append(second)
        wait_for(lambda: len(receiver.accepted) >= 2)
        time.sleep(3)  # more than the lease: nothing else may arrive
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0
    accepted = Counter(r["headers"]["Idempotency-Key"] for r in receiver.accepted)
    assert len(accepted) == 2 and set(accepted.values()) == {1}
    text = log.read_text()
    assert "event=daemon.stopped" in text and "Traceback" not in text


def test_sighup_with_bad_config_keeps_running_then_sigterm_stops(  # type: ignore[no-untyped-def]
    daemon_config, tmp_path, processes
) -> None:
    log = tmp_path / "daemon.log"
    with http_receiver() as receiver:
        config = daemon_config(receiver)
        daemon = start_daemon(config, log)
        processes.append(daemon)
        wait_for(lambda: len(receiver.accepted) >= 2)
        good = config.read_text()
        config.write_text(good.replace("port = ", 'port = "not a number" #'))
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "event=config.rejected" in log.read_text())
        assert daemon.poll() is None
        config.write_text(good)
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "event=config.reloaded" in log.read_text())
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
        assert time.monotonic() - started < 5
    text = log.read_text()
    assert "endpoints[0] (soon).port" in text
    assert "secret-token" not in text  # the webhook URL is a secret
    for line in text.splitlines():
        assert line.startswith("ts=") and " event=" in line


def test_notify_test_and_status_commands(daemon_config, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from monitor.cli.app import main

    with http_receiver() as receiver:
        config = daemon_config(receiver)
        assert main(["notify-test", "--config", str(config)]) == 0
        assert capsys.readouterr().out.strip() == "hook: accepted"
        assert receiver.bodies()[0]["kind"] == "test"
        assert main(["notify-test", "--config", str(config), "--channel", "nope"]) == 3
        assert "no channel named nope (known: hook)" in capsys.readouterr().err
    with http_receiver([400]) as receiver:
        config = daemon_config(receiver)
        assert main(["notify-test", "--config", str(config)]) == 1
        assert "hook: FAILED: hook: HTTP 400" in capsys.readouterr().out
    assert main(["run", "--config", str(config), "--once"]) == 0
    capsys.readouterr()
    # Plugin exit code of the worst open alert (cert.untrusted is critical).
    assert main(["status", "--config", str(config), "--format", "json"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["heartbeat"]["overdue"] is False and "T" in doc["heartbeat"]["last_probe"]
    rows = {r["endpoint"]: r for r in doc["addresses"]}
    assert rows["soon"]["open_alert"] == "warning" and rows["soon"]["days_left"] < 11
    assert rows["alone"]["worst_rule"] == "cert.untrusted"
    assert main(["status", "--config", str(config)]) == 2
    table = capsys.readouterr().out
    assert "soon" in table and "alone" in table


async def test_reload_reschedules_endpoints_reports_and_renewals(daemon_config) -> None:  # type: ignore[no-untyped-def]
    with http_receiver() as receiver:
        path = daemon_config(receiver)
        store = Store.open(load(path).database_url())
        daemon = Daemon(path, store, load(path))
        daemon.jobs.schedule(daemon.gen.config)
        assert daemon.scheduler.get_job("report") is None
        path.write_text(path.read_text() + '\n[reports]\nschedule = "0 7 * * 1"\n')
        daemon.reload()
        jobs = {job.id for job in daemon.scheduler.get_jobs()}
        store.close()
    assert {"endpoint:soon", "endpoint:alone", "report"} <= jobs


def test_claims_at_most_four_messages_per_channel(tmp_path: Path) -> None:
    """A crash after posting but before recording repeats what was in flight; Teams cannot drop
    repeats, so at most PER_CHANNEL messages of a channel are in flight at once."""
    from monitor.alerts.outbox import PER_CHANNEL, Outbox
    from monitor.store.messages import enqueue
    from notifications.base import Notification

    store = Store.open(f"sqlite:///{tmp_path / 'o.db'}")
    now = datetime.now(UTC)
    with store.transaction("test") as session:
        for channel, count in (("teams", 10), ("mail", 3)):
            for number in range(count):
                note = Notification(
                    "opened",
                    "critical",
                    "cert.expired",
                    "t",
                    "e",
                    "h",
                    25,
                    "a",
                    None,
                    "m",
                    now.isoformat(),
                    f"{channel}-{number}",
                )
                enqueue(session, note, channel, now)
    claimed = Outbox(store, {}).claim()
    per = {c: sum(1 for m in claimed if m.channel == c) for c in ("teams", "mail")}
    assert PER_CHANNEL == 4 and per == {"teams": 4, "mail": 3}
    store.close()


def test_sqlite_file_removed_under_the_daemon_stops_it_loudly(  # type: ignore[no-untyped-def]
    tmp_path, config_file, smtp_server, processes
) -> None:
    """Before: the daemon kept "sending" for 25 s into the unlinked file; all lost at restart."""
    server = smtp_server("plain")
    config = config_file(
        endpoint_toml("mail1", server.port),
        extra='[daemon]\ninterval = "10s"\noutbox_interval = "1s"\nlog_level = "info"\n',
    )
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, log)
    processes.append(daemon)
    wait_for(lambda: b"probe.done" in log.read_bytes())
    (tmp_path / "relaycert.db").unlink()
    daemon.wait(timeout=20)
    assert daemon.returncode == 3
    text = log.read_text()
    assert "store.gone" in text and "was removed while relaycert was running" in text
