"""Probe workers (``relaycert scan`` over many addresses): forked processes probe like this one,
results come back in target order, an address belongs to one worker, and a worker that dies is
an error, not a hang."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time

import pytest

from checks.base import ProbeStatus
from monitor import aio
from monitor.errors import RelaycertError
from monitor.probe.bounded import probe_many
from monitor.probe.workers import MIN_TARGETS, ProbePool, shard, wanted
from monitor.results import ProbeTarget


def targets(port: int, addresses: list[str], timeout: float = 3.0) -> list[ProbeTarget]:
    return [
        ProbeTarget(f"e{i}", "mail1.contoso.com", port, a, "starttls", "probe.test", timeout)
        for i, a in enumerate(addresses)
    ]


def test_workers_probe_like_this_process(smtp_server, write_chain, good_leaf, intermediate) -> None:  # type: ignore[no-untyped-def]
    server = smtp_server("starttls", *write_chain(good_leaf, intermediate))
    # 127.0.0.1 serves; 127.0.0.2 refuses (the server listens on one address only).
    wanted_targets = targets(server.port, ["127.0.0.1", "127.0.0.2"] * 6)
    pool = ProbePool(2)
    try:
        pooled = aio.run(pool.probe(wanted_targets, 8, 2))
        again = aio.run(pool.probe(wanted_targets[:3], 8, 2))  # a pool serves several scans
    finally:
        pool.close()
    here = aio.run(probe_many(wanted_targets, 8))
    assert [r.target for r in pooled] == wanted_targets
    assert [r.status for r in pooled] == [r.status for r in here]
    assert [r.chain_der for r in pooled] == [r.chain_der for r in here]
    assert pooled[0].status is ProbeStatus.OK and len(pooled[0].chain_der) == 2
    assert pooled[1].status is ProbeStatus.UNREACHABLE and pooled[1].failed_step == "connect"
    assert [r.status for r in again] == [r.status for r in pooled[:3]]
    assert all(not p.is_alive() for p in pool.processes)  # closed and reaped


def test_an_address_belongs_to_one_worker() -> None:
    addresses = [f"127.0.0.{1 + i % 5}" for i in range(40)]
    shards = shard(targets(25, addresses), 3)
    owners = {t.address: n for n, part in enumerate(shards) for _, t in part}
    assert all(t.address in owners for t in targets(25, addresses))
    for number, part in enumerate(shards):
        assert all(owners[t.address] == number for _, t in part)
    assert sorted(i for part in shards for i, _ in part) == list(range(40))
    assert {len({t.address for _, t in part}) for part in shards} == {1, 2}  # dealt in turn


def test_small_scans_and_single_cores_probe_here() -> None:
    assert wanted(MIN_TARGETS - 1, 0) == 0
    assert wanted(MIN_TARGETS, 1) == 0
    assert wanted(MIN_TARGETS, 3) == 3


def test_a_dead_worker_is_an_error_not_a_hang() -> None:
    with socket.socket() as silent:  # accepts (the kernel does) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        pool = ProbePool(2)

        async def scan_and_kill() -> None:
            running = asyncio.ensure_future(
                pool.probe(targets(silent.getsockname()[1], ["127.0.0.1"] * 4, 20), 8, 4)
            )
            await asyncio.sleep(0.5)
            os.kill(pool.processes[0].pid, signal.SIGKILL)
            await asyncio.wait_for(running, 10)

        started = time.monotonic()
        try:
            with pytest.raises(RelaycertError, match="probe worker relaycert-probe-0 exited"):
                aio.run(scan_and_kill())
        finally:
            pool.close()
    assert time.monotonic() - started < 10


def test_scan_with_workers_gives_the_same_results(
    smtp_server, write_chain, good_leaf, intermediate, config_file, capsys
) -> None:  # type: ignore[no-untyped-def]
    """``relaycert scan`` over MIN_TARGETS endpoints forks workers (before its event loop and
    the store's thread) and stores and prints what probing in-process gives."""
    import json

    from monitor.cli.app import main
    from tests.conftest import endpoint_toml

    server = smtp_server("starttls", *write_chain(good_leaf, intermediate))
    endpoints = "".join(endpoint_toml(f"mail{i}", server.port) for i in range(MIN_TARGETS))
    documents = {}
    for workers in (1, 2):
        path = config_file(endpoints)
        text = path.read_text().replace('timeout = "3s"', f'timeout = "3s"\nworkers = {workers}')
        path.write_text(text)
        code = main(["scan", "--config", str(path), "--format", "json"])
        documents[workers] = (code, json.loads(capsys.readouterr().out))
    (code_here, here), (code_pooled, pooled) = documents[1], documents[2]
    assert code_here == code_pooled
    assert len(pooled["results"]) == MIN_TARGETS
    assert [(r["endpoint"], r["status"], r["sha256"]) for r in pooled["results"]] == [
        (r["endpoint"], r["status"], r["sha256"]) for r in here["results"]
    ]
    assert {r["status"] for r in pooled["results"]} == {"ok"}


def test_scan_with_progress_and_workers_keeps_each_result_with_its_endpoint(
    smtp_server, write_chain, good_leaf, intermediate, root_ca, config_file
) -> None:  # type: ignore[no-untyped-def]
    """A terminal's ``relaycert scan`` (a progress bar) over MIN_TARGETS endpoints: with probe
    workers, every endpoint's record is its own server's certificate, and progress counts
    every endpoint.  (Per-endpoint scans used to read one worker's pipe from several threads at
    once, so a result could land at another endpoint's place.)"""
    from datetime import UTC, datetime

    from checks.certinfo import fingerprint
    from monitor.config.loader import load
    from monitor.demo import pki
    from monitor.pipeline.oneshot import scan
    from tests.conftest import endpoint_toml

    other_leaf = pki.make_leaf(intermediate, ["mail2.contoso.com"])
    servers = [
        smtp_server("starttls", *write_chain(good_leaf, intermediate)),
        smtp_server("starttls", *write_chain(other_leaf, intermediate)),
    ]
    expected = {
        s.port: fingerprint(leaf.cert)
        for s, leaf in zip(servers, (good_leaf, other_leaf), strict=True)
    }
    endpoints = "".join(endpoint_toml(f"mail{i}", servers[i % 2].port) for i in range(MIN_TARGETS))
    config = load(config_file(endpoints))
    seen: list[tuple[int, int, int]] = []
    outcome: dict[str, list] = {}  # type: ignore[type-arg]

    def run() -> None:
        now = datetime.now(UTC)
        try:
            outcome["records"] = aio.run(
                scan(config, None, None, now, progress=lambda *a: seen.append(a), pool=pool)
            )
        except Exception as exc:  # reported by the assertions below
            outcome["error"] = [exc]

    pool = ProbePool(2)
    scanning = threading.Thread(target=run, daemon=True)
    try:
        scanning.start()
        scanning.join(60)
        hung = scanning.is_alive()
    finally:
        pool.close()  # ends the workers: a reader stuck on a pipe gets EOF and lets go
    scanning.join(10)
    assert not hung, "the scan hung (several readers on one worker's pipe)"
    assert "error" not in outcome, outcome.get("error")
    records = outcome["records"]
    assert [r.result.target.endpoint for r in records] == [f"mail{i}" for i in range(MIN_TARGETS)]
    assert {r.result.status for r in records} == {ProbeStatus.OK}
    wrong = [
        r.result.target.endpoint
        for r in records
        if fingerprint(r.chain[0]) != expected[r.result.target.port]
    ]
    assert wrong == []
    assert seen[-1] == (MIN_TARGETS, MIN_TARGETS, seen[-1][2])
