"""No lookup of one endpoint stops another's probe, or the scan (issue #35, defect 1).

The delivery direction's lookups (MX, the MTA-STS policy, TLSA) and the revocation check run
beside the probes.  A policy host that closes the connection inside its headers, or sends more
headers than anyone reads, once ended ``relaycert scan`` with "internal error" and no result
for any endpoint, and made the daemon's job raise at every run.  Here: hostile policy hosts on
their own loopback addresses (127.0.0.3, 127.0.0.4, port 443, with a certificate the test CA
issued, so the TLS handshake succeeds and the hostile part is HTTP), names from a loopback DNS
server, listeners on aiosmtpd.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from monitor.cli.app import main
from monitor.demo import pki
from monitor.demo.servers import LoopbackSMTP
from tests.dnsserver import loopback_dns

# What each hostile policy host does once it has read the request.
HOSTILE = {
    # the status line and half a header, then the connection is closed
    "closing.test": ("127.0.0.3", b"HTTP/1.1 200 OK\r\nContent-Type: text/pl"),
    # 70 KiB of header lines with no end of the head
    "huge.test": ("127.0.0.4", b"HTTP/1.1 200 OK\r\n" + (b"X-Pad: " + b"a" * 1000 + b"\r\n") * 70),
}


def _serve(address: str, answer: bytes, context: ssl.SSLContext, stop: threading.Event) -> None:
    listener = socket.create_server((address, 443))
    listener.settimeout(0.2)
    with listener:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(raw, server_side=True) as conn:
                    conn.settimeout(3)
                    conn.recv(4096)  # the request
                    conn.sendall(answer)
            except OSError:
                pass


@pytest.fixture(scope="module")
def hostile_policy_hosts(
    tmp_path_factory: pytest.TempPathFactory, intermediate: pki.Issued
) -> Iterator[None]:
    leaf = pki.make_leaf(intermediate, [f"mta-sts.{d}" for d in HOSTILE])
    key, chain = pki.write_chain(tmp_path_factory.mktemp("hostile"), "policy", leaf, intermediate)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key)
    stop = threading.Event()
    threads = []
    for address, answer in HOSTILE.values():
        try:
            socket.create_server((address, 443)).close()
        except OSError as exc:
            if os.environ.get("CI") == "true":
                pytest.fail(f"cannot listen on {address}:443 for a policy host: {exc}")
            pytest.skip(f"cannot listen on {address}:443 (root needed): {exc}")
        thread = threading.Thread(target=_serve, args=(address, answer, context, stop))
        thread.start()
        threads.append(thread)
    yield
    stop.set()
    for thread in threads:
        thread.join()


@pytest.fixture
def fleet(
    hostile_policy_hosts: None,
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
    intermediate: pki.Issued,
    config_file: Callable[..., Path],
) -> Iterator[Path]:
    """Two MX hosts whose domains' policy hosts are hostile, and a relay no MX names; the
    configuration that scans them through the loopback DNS server."""
    hosts = {
        "mx-closing": "mx.closing.test",
        "mx-huge": "mx.huge.test",
        "relay": "relay.contoso.com",
    }
    endpoints = ""
    for name, host in hosts.items():
        server = smtp_server(
            "starttls", *write_chain(pki.make_leaf(intermediate, [host]), intermediate)
        )
        endpoints += (
            f'\n[[endpoints]]\nname = "{name}"\nhost = "{host}"\nport = {server.port}\n'
            'mode = "starttls"\nconnector = "relay"\naddresses = ["127.0.0.1"]\n'
        )
    typed = {}
    records = {}
    for domain, (address, _) in HOSTILE.items():
        typed[domain, "MX"] = [f"10 mx.{domain}."]
        typed[f"_mta-sts.{domain}", "TXT"] = ['"v=STSv1; id=1"']
        records[f"mta-sts.{domain}"] = [address]
    with loopback_dns(records, typed=typed) as port:
        extra = (
            f'[dns]\nnameservers = ["127.0.0.1:{port}"]\n'
            '[[delivery_connectors]]\nname = "by-mx"\nuse_mx_record = true\n'
            f"recipient_domains = {json.dumps(sorted(HOSTILE))}\n"
            'tls_settings = "EncryptionOnly"\n'
            '[daemon]\ninterval = "1h"\nlog_level = "error"\n'
        )
        yield config_file(endpoints, extra=extra)


def _by_endpoint(document: dict[str, object]) -> dict[str, dict[str, object]]:
    return {r["endpoint"]: r for r in document["results"]}  # type: ignore[attr-defined, index]


def _rules(result: dict[str, object]) -> dict[str, str]:
    return {f["rule"]: f["message"] for f in result["findings"]}  # type: ignore[attr-defined, index]


def test_a_hostile_policy_host_is_that_domains_finding_not_the_scans_end(
    fleet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["scan", "--config", str(fleet), "--format", "json"])
    captured = capsys.readouterr()
    assert code != 3 and "internal error" not in captured.err, captured.err
    found = _by_endpoint(json.loads(captured.out))
    assert set(found) == {"mx-closing", "mx-huge", "relay"}
    for name in ("mx-closing", "mx-huge", "relay"):  # each probe's own evidence is kept
        assert found[name]["status"] == "ok", found[name]
        assert found[name]["tls_version"], found[name]
    for name, domain in (("mx-closing", "closing.test"), ("mx-huge", "huge.test")):
        message = _rules(found[name])["mtasts.policy_unreachable"]
        assert domain in message, message  # which lookup failed
    assert not any(r.startswith("mtasts.") for r in _rules(found["relay"]))


def test_run_once_stores_every_endpoint_despite_a_hostile_policy_host(
    fleet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from monitor.config.loader import load
    from monitor.store.engine import Store
    from monitor.store.reads.status import status

    assert main(["run", "--once", "--config", str(fleet)]) == 0
    assert "internal error" not in capsys.readouterr().err
    config = load(fleet)
    store = Store.open(config.database_url())
    try:
        rows, _ = status(store, __import__("monitor.clock").clock.utcnow())
    finally:
        store.close()
    assert {r.endpoint for r in rows} == {"mx-closing", "mx-huge", "relay"}
    assert all(r.status == "ok" for r in rows), rows


async def test_the_daemon_keeps_probing_beside_a_hostile_policy_host(fleet: Path) -> None:
    """Each endpoint's job runs and stores on time, at every run, and none is logged as failing."""
    import asyncio

    from monitor.config.loader import load
    from monitor.service.daemon import Daemon
    from monitor.store.engine import Store

    config = load(fleet)
    store = Store.open(config.database_url())
    daemon = Daemon(fleet, store, config)
    task = asyncio.create_task(daemon.serve(first_run_spread=timedelta(0)))
    try:
        for _ in range(100):
            await asyncio.sleep(0.1)
            if daemon.probes >= 3:
                break
        assert daemon.probes >= 3, "an endpoint's job did not probe"
        assert daemon.jobs.context.failing == {}
    finally:
        daemon.stopping.set()
        await asyncio.gather(task, return_exceptions=True)
        store.close()


def test_status_says_which_endpoints_are_not_probed_on_time(
    fleet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One endpoint's job fails while the others run: its stored result is old, and status
    says so (row and heartbeat) instead of showing it as current."""
    import sqlite3

    from monitor.clock import utcnow

    assert main(["scan", "--config", str(fleet), "--format", "json"]) in (0, 1, 2)
    capsys.readouterr()
    assert main(["status", "--config", str(fleet), "--format", "json"]) in (0, 1, 2)
    assert json.loads(capsys.readouterr().out)["heartbeat"]["overdue_endpoints"] == []
    old = (utcnow() - timedelta(hours=3)).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(fleet.parent / "relaycert.db") as db:
        db.execute(
            "UPDATE observation SET started_at = ?, last_seen_at = ? WHERE endpoint_id = "
            "(SELECT id FROM endpoint WHERE name = 'mx-huge')",
            (old, old),
        )
        # An address 'relay' no longer resolves to keeps its last row: 'relay' is probed.
        db.execute(
            "CREATE TEMP TABLE gone AS SELECT * FROM observation WHERE endpoint_id = "
            "(SELECT id FROM endpoint WHERE name = 'relay')"
        )
        db.execute(
            "UPDATE gone SET id = id + 100000, address = '127.0.0.9', started_at = ?, "
            "last_seen_at = ?",
            (old, old),
        )
        db.execute("INSERT INTO observation SELECT * FROM gone")
    assert main(["status", "--config", str(fleet), "--format", "json"]) == 3
    document = json.loads(capsys.readouterr().out)
    assert document["heartbeat"]["overdue"] is False  # the others are probed
    assert document["heartbeat"]["overdue_endpoints"] == ["mx-huge"]
    late = {r["endpoint"] for r in document["addresses"] if r["overdue"]}
    assert late == {"mx-huge"}
    main(["status", "--config", str(fleet)])
    text = capsys.readouterr().out
    assert "Not probed on time: mx-huge" in " ".join(text.split())


async def test_a_job_that_keeps_failing_is_named_until_it_succeeds(fleet: Path) -> None:
    """A job body that raises (relaycert's own error or a defect) is one log line, never the
    scheduler's; after three failed runs in a row it is the daemon's problem (/healthz)."""
    from monitor.config.loader import load
    from monitor.service.daemon import Daemon
    from monitor.store.engine import Store

    config = load(fleet)
    store = Store.open(config.database_url())
    context = Daemon(fleet, store, config).jobs.context

    async def broken() -> None:
        raise KeyError("a defect")

    async def fine() -> None:
        pass

    try:
        for runs in range(1, 4):
            await context.guarded("probe", broken(), endpoint="relay")
            assert context.failing["probe:relay"].runs == runs
            assert (context.problem() is None) == (runs < 3)
        problem = context.problem()
        assert problem is not None and "probe:relay failed 3 runs in a row" in problem
        assert "KeyError" in problem
        await context.guarded("probe", fine(), endpoint="relay")
        assert context.failing == {} and context.problem() is None
    finally:
        store.close()


async def test_a_full_disk_in_a_job_is_one_clean_line(
    fleet: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """#35: with the disk full the renewal job raised four tracebacks to the scheduler.  A job
    that meets the host's fault (ENOSPC, written here to /dev/full) logs one line saying so,
    no traceback, and counts as failing."""
    import logging

    from monitor.config.loader import load
    from monitor.service.daemon import Daemon
    from monitor.store.engine import Store

    config = load(fleet)
    store = Store.open(config.database_url())
    context = Daemon(fleet, store, config).jobs.context

    async def write_to_a_full_disk() -> None:
        with open("/dev/full", "wb") as full:  # noqa: ASYNC230
            full.write(b"renewal state")
            full.flush()

    try:
        with caplog.at_level(logging.ERROR, logger="relaycert"):
            await context.guarded("renewal", write_to_a_full_disk(), renewal="contoso")
    finally:
        store.close()
    (record,) = caplog.records
    assert record.getMessage() == "renewal.error" and record.exc_info is None
    assert "No space left on device" in record.fields["error"]  # type: ignore[attr-defined]
    assert context.failing["renewal:contoso"].runs == 1


def _listen_on(config: Path, port: int) -> None:
    text = config.read_text().replace(
        'log_level = "error"\n', f'log_level = "error"\nmetrics_listen = "127.0.0.1:{port}"\n'
    )
    config.write_text(text)


async def test_healthz_names_a_job_that_keeps_failing(fleet: Path) -> None:
    """The daemon runs, the store answers, yet one job fails run after run: /healthz says 503
    with the job and its error, and 200 again once it succeeds."""
    import asyncio

    import httpx

    from monitor.config.loader import load
    from monitor.demo.servers import free_port
    from monitor.service.daemon import Daemon
    from monitor.store.engine import Store

    port = free_port()
    _listen_on(fleet, port)
    config = load(fleet)
    store = Store.open(config.database_url())
    daemon = Daemon(fleet, store, config)
    context = daemon.jobs.context

    async def broken() -> None:
        raise RuntimeError("the job's own defect")

    async def fine() -> None:
        pass

    task = asyncio.create_task(daemon.serve(first_run_spread=timedelta(hours=1)))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            for _ in range(100):
                await asyncio.sleep(0.05)
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/healthz")).status_code == 200:
                        break
            for _ in range(3):  # a job runs in a task of its own, as the scheduler's do
                await asyncio.create_task(context.guarded("outbox", broken()))
            answer = await client.get("/healthz")
            assert answer.status_code == 503, answer.text
            assert "outbox failed 3 runs in a row" in answer.text
            assert "RuntimeError: the job's own defect" in answer.text
            await asyncio.create_task(context.guarded("outbox", fine()))
            assert (await client.get("/healthz")).status_code == 200
            for _ in range(3):  # failing again; a reload forgets it (the job may be gone)
                await asyncio.create_task(context.guarded("outbox", broken()))
            assert (await client.get("/healthz")).status_code == 503
            daemon.reload()
            assert (await client.get("/healthz")).status_code == 200
    finally:
        daemon.stopping.set()
        await asyncio.gather(task, return_exceptions=True)
        store.close()
