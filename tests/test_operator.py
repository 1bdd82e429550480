"""What operators plug relaycert into: monitoring-plugin output (parsed strictly), usage errors
as UNKNOWN, a default configuration path."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.cli.app import check_main, main
from monitor.demo import pki
from monitor.demo.servers import free_port
from tests.conftest import endpoint_toml

# Monitoring Plugins Development Guidelines, section "Performance data":
# 'label'=value[UOM];[warn];[crit];[min];[max], space separated; UOM one of s ms us % B KB MB
# TB c (or none); thresholds are ranges ([@][start:][end]).
_RANGE = r"@?(?:-?[\d.]+|~)?:?(?:-?[\d.]+)?"
PERF = re.compile(
    rf"^(?:'[^'=]+'|[^'= ]+)=(-?[\d.]+)(s|ms|us|%|B|KB|MB|TB|c)?"
    rf";({_RANGE})?;({_RANGE})?;(-?[\d.]+)?;(-?[\d.]+)?$"
)
STATUS = re.compile(r"^RELAYCERT (OK|WARNING|CRITICAL|UNKNOWN) - ([^|]+?)(?: \| (.*))?$")


def parse_plugin_output(text: str) -> tuple[str, str, list[str], list[str]]:
    """(state, summary, perfdata items, long output lines); fails on anything malformed."""
    first, *rest = text.rstrip("\n").split("\n")
    match = STATUS.match(first)
    assert match, f"bad status line: {first!r}"
    perf = match.group(3).split(" ") if match.group(3) else []
    for item in perf:
        assert PERF.match(item), f"bad performance data: {item!r}"
    assert all("|" not in line for line in rest)
    return match.group(1), match.group(2), perf, rest


@pytest.fixture
def plugin_fleet(
    write_chain,
    intermediate,
    config_file,
    smtp_server,  # type: ignore[no-untyped-def]
) -> Callable[[str], Path]:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    good = smtp_server(
        "starttls", *write_chain(pki.make_leaf(intermediate, ["mail1.contoso.com"]), intermediate)
    )
    soon = smtp_server(
        "starttls",
        *write_chain(
            pki.make_leaf(
                intermediate, ["mail2.contoso.com"], not_before=now - timedelta(days=70), days=90
            ),
            intermediate,
        ),
    )
    bad = smtp_server(
        "starttls", *write_chain(pki.make_leaf(intermediate, ["x.fabrikam.net"]), intermediate)
    )
    endpoints = (
        endpoint_toml("ok-ep", good.port)
        + endpoint_toml("warn-ep", soon.port, host="mail2.contoso.com")
        + endpoint_toml("crit-ep", bad.port)
        + endpoint_toml("unknown-ep", free_port())
    )
    path = config_file(endpoints)
    return lambda name: path


@pytest.mark.parametrize(
    ("endpoint", "state", "code"),
    [
        ("ok-ep", "OK", 0),
        ("warn-ep", "WARNING", 1),
        ("crit-ep", "CRITICAL", 2),
        ("unknown-ep", "UNKNOWN", 3),
    ],
)
def test_nagios_output_is_a_valid_plugin_output(
    plugin_fleet,
    capsys,
    endpoint: str,
    state: str,
    code: int,  # type: ignore[no-untyped-def]
) -> None:
    config = plugin_fleet(endpoint)
    assert check_main(["--config", str(config), "--endpoint", endpoint, "--no-store"]) == code
    got, summary, perf, long_output = parse_plugin_output(capsys.readouterr().out)
    assert got == state
    if state == "UNKNOWN":
        assert perf == [] and "probe.unreachable" in summary
    else:
        assert len(perf) == 1 and perf[0].startswith(f"'days_left_{endpoint}_127.0.0.1'=")
        assert perf[0].endswith(";30.00:;7.00:;;")  # 90-day certificates: the [expiry] days
    if state == "CRITICAL":
        assert "connector.name_not_covered" in summary and long_output
    if state == "OK":
        assert all(line.startswith(("INFO", "DELIVERY")) for line in long_output)
    if state != "UNKNOWN":  # the served certificate says what it was judged by
        assert f"DELIVERY {endpoint}: judged by delivery contract unknown" in long_output[-1]


def test_usage_errors_are_unknown_and_config_defaults(
    tmp_path: Path,
    capsys,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["scan", "--no-such-option"])
    assert usage.value.code == 3  # argparse's 2 would read as CRITICAL
    monkeypatch.setenv("RELAYCERT_CONFIG", str(tmp_path / "missing.toml"))
    assert main(["status"]) == 3
    assert f"{tmp_path / 'missing.toml'}: file not found" in capsys.readouterr().err


async def test_metrics_and_healthz_during_a_daemon_run(  # type: ignore[no-untyped-def]
    write_chain, intermediate, config_file, smtp_server
) -> None:
    import asyncio

    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    from checks.certinfo import fingerprint
    from monitor.config.loader import load
    from monitor.service.daemon import Daemon
    from monitor.store.engine import Store

    leaf = pki.make_leaf(intermediate, ["mail1.contoso.com"])
    server = smtp_server("starttls", *write_chain(leaf, intermediate))
    port = free_port()
    config_path = config_file(
        endpoint_toml("mail1", server.port),
        extra=(
            f'[daemon]\ninterval = "10s"\nlog_level = "error"\n'
            f'metrics_listen = "127.0.0.1:{port}"\n'
        ),
    )
    config = load(config_path)
    store = Store.open(config.database_url())
    daemon = Daemon(config_path, store, config)
    task = asyncio.create_task(daemon.serve(first_run_spread=__import__("datetime").timedelta(0)))
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            samples: dict[str, float] = {}
            for _ in range(100):
                await asyncio.sleep(0.1)
                try:
                    text = (await client.get(f"{url}/metrics")).text
                except httpx.HTTPError:
                    continue
                families = list(text_string_to_metric_families(text))
                samples = {
                    s.name: s.value
                    for f in families
                    for s in f.samples
                    if s.labels.get("endpoint") == "mail1"
                    and s.labels.get("direction") == "from_exchange_online"
                    and s.name.startswith("relaycert_")
                }
                if "relaycert_cert_not_after_timestamp_seconds" in samples:
                    break
            assert samples["relaycert_probe_success"] == 1.0
            assert (
                samples["relaycert_cert_not_after_timestamp_seconds"]
                == leaf.cert.not_valid_after_utc.timestamp()
            )
            assert fingerprint(leaf.cert)  # the stored leaf is the one served
            assert (await client.get(f"{url}/healthz")).status_code == 200
            (config_path.parent / "relaycert.db").unlink()
            gone = await client.get(f"{url}/healthz")
            assert gone.status_code == 503 and "removed" in gone.text
    finally:
        daemon.stopping.set()
        await asyncio.gather(task, return_exceptions=True)
        store.close()


def test_journald_priorities_without_timestamps(tmp_path: Path, config_file) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    config = config_file(endpoint_toml("gone", free_port()), extra='[daemon]\nlog_level = "info"\n')
    log = tmp_path / "journal.txt"
    with log.open("wb") as stream:
        info = os.fstat(stream.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        subprocess.run(
            [sys.executable, "-m", "monitor", "run", "--once", "--config", str(config)],
            stderr=stream,
            stdout=subprocess.DEVNULL,
            env=env,
            check=False,
            timeout=60,
            cwd=Path(__file__).parent.parent,
        )
    lines = [line for line in log.read_text().splitlines() if line]
    assert lines and all(re.match(r"^<[2-7]>", line) for line in lines), lines
    assert not any("ts=" in line for line in lines)
    assert any(line.startswith("<6>level=info event=probe.done") for line in lines), lines


async def test_notify_ready_watchdog_stopping_and_log_format_reload(  # type: ignore[no-untyped-def]
    tmp_path: Path, config_file, smtp_server, write_chain, intermediate, monkeypatch, capsys
) -> None:
    import asyncio
    import json
    import logging
    import socket
    from datetime import timedelta

    from monitor import logs
    from monitor.config.loader import load
    from monitor.service.daemon import Daemon
    from monitor.store.engine import Store

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    server = smtp_server(
        "starttls", *write_chain(pki.make_leaf(intermediate, ["mail1.contoso.com"]), intermediate)
    )
    config_path = config_file(
        endpoint_toml("mail1", server.port), extra='[daemon]\ninterval = "10s"\n'
    )
    config = load(config_path)
    logs.setup(config.daemon.log_format, "info")
    store = Store.open(config.database_url())
    daemon = Daemon(config_path, store, config)
    task = asyncio.create_task(daemon.serve(first_run_spread=timedelta(0)))
    await asyncio.sleep(0.6)
    config_path.write_text(
        config_path.read_text().replace('interval = "10s"', 'interval = "10s"\nlog_format = "json"')
    )
    capsys.readouterr()
    daemon.reload()
    logs.event(logging.getLogger("relaycert.test"), logging.INFO, "after.reload", x=1)
    daemon.stopping.set()
    await asyncio.gather(task, return_exceptions=True)
    store.close()
    messages = []
    while True:
        try:
            messages.append(sock.recv(100).decode())
        except BlockingIOError:
            break
    sock.close()
    assert messages[0] == "READY=1" and messages[-1] == "STOPPING=1"
    assert messages.count("WATCHDOG=1") >= 2
    line = next(x for x in capsys.readouterr().err.splitlines() if "after.reload" in x)
    assert json.loads(line)["event"] == "after.reload"  # the reloaded format applies at once


def test_progress_only_on_a_terminal_then_a_summary(  # type: ignore[no-untyped-def]
    tmp_path: Path, config_file, smtp_server, write_chain, intermediate, capsys
) -> None:
    import os
    import pty
    import subprocess
    import sys

    good = smtp_server(
        "starttls", *write_chain(pki.make_leaf(intermediate, ["mail1.contoso.com"]), intermediate)
    )
    bad = smtp_server(
        "starttls", *write_chain(pki.make_leaf(intermediate, ["x.fabrikam.net"]), intermediate)
    )
    config = config_file(endpoint_toml("good", good.port) + endpoint_toml("bad", bad.port))

    # Not a terminal: no progress, the table worst first, the summary last.
    assert main(["scan", "--config", str(config), "--no-store"]) == 2
    captured = capsys.readouterr()
    assert "scanning" not in captured.err
    assert captured.out.index("bad") < captured.out.index("good")
    assert (
        captured.out.rstrip().splitlines()[-1].startswith("2 address(es) scanned; worst: critical")
    )
    # --problems-only: the table leaves out the good address; the summary still counts both.
    assert main(["scan", "--config", str(config), "--no-store", "--problems-only"]) == 2
    table, _, summary = capsys.readouterr().out.rpartition("\n2 address(es) scanned")
    assert "\nbad  served" in table and "\ngood  served" not in table
    assert summary.startswith("; worst: critical")

    # A terminal (a pty): the progress line appears on stderr.
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "monitor", "scan", "--config", str(config), "--no-store"],
        stdin=secondary,
        stdout=subprocess.DEVNULL,
        stderr=secondary,
        cwd=Path(__file__).parent.parent,
        env={**os.environ, "COLUMNS": "100", "TERM": "xterm"},
    )
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    process.wait(timeout=60)
    os.close(primary)
    assert b"scanning" in seen and b"endpoints" in seen


def test_init_writes_the_configuration_and_the_units(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import shutil
    import subprocess

    config, units = tmp_path / "relaycert.toml", tmp_path / "units"
    assert main(["init", "--output", str(config), "--systemd", str(units)]) == 0
    assert "[tenant]" in config.read_text()
    service = (units / "relaycert.service").read_text()
    assert "Type=notify" in service and "/opt/relaycert/bin/relaycert" not in service
    assert (units / "relaycert-postfix-reload.path").exists()
    assert (units / "relaycert.service.d" / "bind-low-ports.conf.example").exists()
    assert main(["init", "--output", str(tmp_path / "other.toml"), "--systemd", str(units)]) == 3
    analyze = shutil.which("systemd-analyze")
    if analyze:
        done = subprocess.run(
            [analyze, "verify", str(units / "relaycert.service")], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr


def test_completion_and_man_page_are_current_and_complete() -> None:
    import subprocess

    from monitor.cli.completion import FILES

    shipped = Path(__file__).parent.parent / "monitor" / "examples" / "completion"
    for name, make in FILES.items():
        assert (shipped / name).read_text() == make(), f"{name}: run `make docs`"
    script = shipped / "relaycert.bash"

    def complete(*words: str) -> list[str]:
        line = " ".join(words)
        program = (
            f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; "
            '_relaycert; printf "%s\\n" "${COMPREPLY[@]}"'
        )
        done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
        return done.stdout.split()

    assert complete("relaycert", "sc") == ["scan"]
    assert "--problems-only" in complete("relaycert", "scan", "--pro")
    assert "--once" in complete("relaycert", "capture", "--")
    assert ".SH EXIT STATUS" in (shipped / "relaycert.1").read_text()


METRICS_SERVER = """\
import asyncio, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
from monitor.service.listener import MetricsServer
from monitor.store.engine import Store


async def main():
    store = Store.open(sys.argv[1])
    server = MetricsServer(store, lambda: None, lambda: True)
    await server.start("127.0.0.1", 0)
    print(server.port(), flush=True)
    await asyncio.sleep(120)


asyncio.run(main())
"""


def test_metrics_endpoint_holds_a_connection_flood_under_a_1024_fd_limit(tmp_path: Path) -> None:
    """1500 connections that never finish their request: the daemon (limited to 1024 file
    descriptors, a common default) holds a bounded number of them, and a scraper's request
    made in the middle of the flood is still answered (#25)."""
    import contextlib
    import http.client
    import os
    import socket
    import subprocess
    import sys
    import time

    from monitor.service.gate import Limits

    server = subprocess.Popen(
        [sys.executable, "-c", METRICS_SERVER, f"sqlite:///{tmp_path / 'store.db'}"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    flood: list[socket.socket] = []
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        for _ in range(1500):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            flood.append(sock)
        time.sleep(1.0)
        for sock in flood:  # half a request, then nothing: each holds a connection open
            with contextlib.suppress(OSError):
                sock.send(b"GET /metrics HTTP/1.1\r\n")
        time.sleep(1.0)  # the flood accepted and answered by closing the oldest waiting
        held = len(os.listdir(f"/proc/{server.pid}/fd"))
        answered = None
        deadline = time.monotonic() + 10
        while answered is None and time.monotonic() < deadline:
            scrape = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                scrape.request("GET", "/healthz")
                answered = scrape.getresponse().status
            except OSError:
                time.sleep(0.2)
            finally:
                scrape.close()
        assert answered == 200
        cap = Limits().connections  # the listener's own cap, plus the process's other files
        assert held < cap + 50, f"the metrics server held {held} descriptors"
        assert server.poll() is None  # still running
    finally:
        for sock in flood:
            sock.close()
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()


def test_status_says_whether_a_daemon_runs_and_what_the_probe_measured(  # type: ignore[no-untyped-def]
    write_chain, intermediate, config_file, smtp_server, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    bad = smtp_server(
        "starttls", *write_chain(pki.make_leaf(intermediate, ["x.fabrikam.net"]), intermediate)
    )
    config = config_file(
        endpoint_toml("bad", bad.port) + '[daemon]\ninterval = "1h"\njitter = "0s"\n'
    )
    env = {**os.environ, "COLUMNS": "200"}

    def status() -> str:
        done = subprocess.run(
            [sys.executable, "-m", "monitor", "status", "--config", str(config)],
            cwd=Path(__file__).parent.parent,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
        return done.stdout

    assert main(["scan", "--config", str(config)]) == 2
    shown = status()
    # Before: "(within the expected interval)" as if a daemon probed, and "Result ok" beside
    # "Worst finding critical".
    assert "no daemon is running against this store now" in shown, shown
    assert "Probe" in shown and "measured" in shown and "Result" not in shown
    daemon = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--config", str(config)],
        cwd=Path(__file__).parent.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while "a daemon is running" not in (shown := status()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "a daemon is running; on time" in shown, shown
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    assert "no daemon is running" in status()
