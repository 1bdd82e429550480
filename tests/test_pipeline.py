"""The one scan pipeline: ``[probe] concurrency`` bounds the connections in flight, however the
addresses are spread over endpoints, in ``relaycert scan`` and in the daemon alike."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from monitor.cli.app import main
from monitor.config.loader import load
from monitor.demo.servers import free_port
from monitor.service.daemon import Daemon
from monitor.store.engine import Store

ADDRESSES = [f"127.0.0.{i}" for i in range(2, 26)]  # 24 addresses of one endpoint
CONCURRENCY = 4


class Counter:
    """Connections a loopback server is in dialogue with: from accept until it answered EHLO,
    after which the probe (STARTTLS not offered) hangs up.  That window lies inside the probe's
    own connection, so the highest count is a lower bound of what the client had open."""

    def __init__(self) -> None:
        self.open = 0
        self.most = 0
        self.total = 0


@asynccontextmanager
async def counting_server(counter: Counter) -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counter.open += 1
        counter.total += 1
        counter.most = max(counter.most, counter.open)
        try:
            await asyncio.sleep(0.15)  # a slow greeting: connections overlap if allowed to
            writer.write(b"220 mx.test ESMTP\r\n")
            await writer.drain()
            await reader.readline()
            writer.write(b"250-mx.test\r\n250 PIPELINING\r\n")
            await writer.drain()
        finally:
            counter.open -= 1
        await reader.read()  # until the probe closes
        writer.close()
        await writer.wait_closed()

    port = free_port()
    server = await asyncio.start_server(handle, ADDRESSES, port)
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


def config_text(port: int) -> str:
    addresses = ", ".join(f'"{a}"' for a in ADDRESSES)
    return (
        '[tenant]\nname = "Contoso"\naccepted_domains = ["contoso.com"]\n'
        f'[probe]\ntimeout = "3s"\nconcurrency = {CONCURRENCY}\n'
        f'[[endpoints]]\nname = "wide"\nhost = "mail1.contoso.com"\nport = {port}\n'
        f"addresses = [{addresses}]\n"
    )


async def test_daemon_bounds_connections_of_one_endpoint(tmp_path: Path) -> None:
    counter = Counter()
    async with counting_server(counter) as port:
        path = tmp_path / "relaycert.toml"
        path.write_text(config_text(port))
        config = load(path)
        store = Store.open(config.database_url())
        try:
            records = await Daemon(path, store, config).jobs.check_endpoint("wide")
        finally:
            store.close()
    assert len(records) == len(ADDRESSES) == counter.total
    assert {r.result.status.value for r in records} == {"starttls_missing"}
    assert 2 <= counter.most <= CONCURRENCY


def test_scan_bounds_connections(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    counter = Counter()

    async def run() -> int:
        async with counting_server(counter) as port:
            path = tmp_path / "relaycert.toml"
            path.write_text(config_text(port))
            return await asyncio.to_thread(main, ["scan", "-c", str(path), "--format", "json"])

    assert asyncio.run(run()) == 2  # STARTTLS missing is critical
    assert counter.total == len(ADDRESSES)
    assert 2 <= counter.most <= CONCURRENCY


async def test_reload_keeps_the_probe_permits(tmp_path: Path) -> None:
    path = tmp_path / "relaycert.toml"
    path.write_text(config_text(2525))
    config = load(path)
    store = Store.open(config.database_url())
    try:
        daemon = Daemon(path, store, config)
        before = daemon.gen.scanner
        daemon.reload()  # same concurrency: in-flight probes keep counting against one bound
        assert daemon.gen.scanner is not before
        assert daemon.gen.scanner.semaphore is before.semaphore
        assert daemon.gen.scanner.write_lock is before.write_lock
        path.write_text(
            config_text(2525).replace(f"concurrency = {CONCURRENCY}", "concurrency = 9")
        )
        daemon.reload()
        assert daemon.gen.scanner.semaphore is not before.semaphore
        assert daemon.gen.scanner.write_lock is before.write_lock
    finally:
        store.close()


async def test_daemon_jobs_finishing_together_are_stored_in_a_few_transactions(
    config_file, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Group commit: 60 endpoint jobs finishing at once cost a few transactions, each job gets
    its own records, and everything is stored."""
    from datetime import UTC, datetime

    from sqlalchemy import event

    from monitor.probe.smtp import unresolved
    from monitor.results import ProbeTarget
    from monitor.service.generation import Generation
    from tests.conftest import endpoint_toml

    config = load(config_file("".join(endpoint_toml(f"e{i}", 1) for i in range(60))))
    store = Store.open(config.database_url())
    commits: list[int] = []
    event.listen(store.engine, "commit", lambda _conn: commits.append(1))
    scanner = Generation(config, store).scanner
    now = datetime.now(UTC)

    def failed(name: str) -> list:  # type: ignore[type-arg]
        target = ProbeTarget(name, "x.contoso.com", 25, "127.0.0.1", "starttls", "probe", 1.0)
        return [unresolved(target, "no such host")]

    try:
        groups = await asyncio.gather(
            *(scanner.judge_and_store(failed(f"e{i}"), now) for i in range(60))
        )
        assert [g[0].result.target.endpoint for g in groups] == [f"e{i}" for i in range(60)]
        assert all(g[0].findings for g in groups)
        assert len(commits) <= 4, len(commits)  # one job at a time: 120 transactions
        assert store.counts()["observation"] == 60

    finally:
        store.close()


async def test_a_certificate_served_again_is_parsed_once_for_the_daemons_life(
    config_file,  # type: ignore[no-untyped-def]
    smtp_server,  # type: ignore[no-untyped-def]
    write_chain,  # type: ignore[no-untyped-def]
    good_leaf,  # type: ignore[no-untyped-def]
    intermediate,  # type: ignore[no-untyped-def]
) -> None:
    """Every batch the daemon judges used to parse its chains into new objects, and the rules'
    per-certificate memory (4096 entries per function) kept each new object: a daemon's memory
    grew for hours before it levelled off (bench/soak.py: +26% RSS in 15 minutes).  A chain
    served again is now the same objects in every batch."""
    from datetime import UTC, datetime

    from monitor.config.loader import load
    from monitor.pipeline.scan import Scanner
    from tests.conftest import endpoint_toml

    server = smtp_server("starttls", *write_chain(good_leaf, intermediate))
    config = load(config_file(endpoint_toml("mail1", server.port)))
    scanner = Scanner(config)
    chains = []
    for _ in range(3):
        results = await scanner.probe(config.endpoints)
        (records,) = await scanner.judge_and_store_many([(results, datetime.now(UTC))])
        chains.append(records[0].chain)
    assert chains[0] and all(chain[0] is chains[0][0] for chain in chains)
