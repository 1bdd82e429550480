"""Relay verdicts bound to evidence: a capture counts only by its own signed token, and what was
not measured never improves a verdict.

Every endpoint here sits on one address (127.0.0.1), as several Postfix instances on one host or
relays behind one NAT address do, each with its own in-process relay and client TLS settings, so
nothing but the token can tell their captures apart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import smtplib
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from monitor import aio
from monitor.cli.app import main
from monitor.config.loader import Config, load
from monitor.demo import pki
from monitor.demo.relay import ClientTLS, DemoRelay
from monitor.demo.servers import LoopbackSMTP, free_port
from monitor.pipeline.listening import listening
from monitor.pipeline.scan import Scanner
from monitor.store.engine import Store
from tests.conftest import endpoint_toml
from tests.test_outbound import PROBE_DOMAIN, capture_toml, outbound_toml, relays, served

__all__ = ["relays", "served"]  # fixtures


def fleet(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    relays: Callable[..., DemoRelay],
    clients: dict[str, ClientTLS | None],
    wait: str = "3s",
    delays: dict[str, float] | None = None,
) -> tuple[Path, dict[str, DemoRelay]]:
    """One endpoint per client, all on 127.0.0.1, each relaying through its own relay to the
    capture listener (``None``: a relay with no route, whose probe never arrives)."""
    port = free_port()
    started: dict[str, DemoRelay] = {}
    body = ""
    for name, client in clients.items():
        relay = relays(("127.0.0.1", port) if client else None, client or ClientTLS())
        relay.forwarder.delay = (delays or {}).get(name, 0.0)
        started[name] = relay
        body += endpoint_toml(name, served.port, host=f"{name}.contoso.com")
        body += outbound_toml(relay.port)
    return config_file(body, extra=capture_toml(port, wait)), started


def sql(config: Path, query: str, **params: Any) -> list[Any]:
    engine = create_engine(load(config).database_url())
    with engine.connect() as conn:
        rows = conn.execute(text(query), params).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def newest_client(config: Path, endpoint: str) -> tuple[str, dict[str, Any]]:
    """(status, session) of ``endpoint``'s newest outbound result."""
    rows = sql(
        config,
        "SELECT o.status, o.session FROM observation o JOIN endpoint e ON e.id = o.endpoint_id "
        "WHERE e.name = :name AND o.direction = 'to_exchange_online' ORDER BY o.id DESC",
        name=endpoint,
    )
    status, session = rows[0]
    return status, json.loads(session) if isinstance(session, str) else (session or {})


def alerts(config: Path) -> set[tuple[str, str, str]]:
    return set(
        sql(
            config,
            "SELECT e.name, a.rule, a.status FROM alert a JOIN endpoint e ON e.id = a.endpoint_id",
        )
    )


def newest_findings(config: Path, endpoint: str) -> dict[str, tuple[str, str]]:
    """rule: (severity, message) of ``endpoint``'s newest outbound result."""
    rows = sql(
        config,
        "SELECT f.rule, f.severity, f.message FROM finding f WHERE f.observation_id = ("
        "SELECT max(o.id) FROM observation o JOIN endpoint e ON e.id = o.endpoint_id "
        "WHERE e.name = :name AND o.direction = 'to_exchange_online')",
        name=endpoint,
    )
    return {rule: (severity, message) for rule, severity, message in rows}


def captures(config: Path) -> int:
    return int(sql(config, "SELECT count(*) FROM capture")[0][0])


def wait_for(predicate: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def client_tls(key: Path | None = None, chain: Path | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    if key and chain:
        context.load_cert_chain(chain, key)
    return context


def while_listening(
    config: Path, action: Callable[[Scanner], Any], until: Callable[[], bool]
) -> None:
    """Run ``action`` with the capture listener up (as the daemon keeps it), until ``until``."""

    async def go() -> None:
        loaded: Config = load(config)
        store = Store.open(loaded.database_url())
        try:
            async with listening(loaded, store) as scanner:
                if asyncio.iscoroutinefunction(action):
                    await action(scanner)
                else:  # a blocking client: in a thread, so the listener keeps serving
                    await asyncio.to_thread(action, scanner)
                deadline = time.monotonic() + 15
                while not await asyncio.to_thread(until):
                    assert time.monotonic() < deadline, "timed out waiting"
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.3)  # what the arrival stores lands before the check
        finally:
            store.close()

    aio.run(go())


@pytest.fixture
def covering(write_chain, good_leaf: pki.Issued, intermediate: pki.Issued) -> ClientTLS:  # type: ignore[no-untyped-def]
    return ClientTLS(True, *write_chain(good_leaf, intermediate))


def test_a_hand_send_through_the_good_server_leaves_the_broken_one_broken(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    relays: Callable[..., DemoRelay],
    covering: ClientTLS,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, relay = fleet(
        config_file, served, relays, {"broken": ClientTLS(tls=True), "good": covering}
    )
    assert main(["run", "--once", "--config", str(config)]) == 0
    assert ("broken", "outbound.no_client_certificate", "open") in alerts(config)

    def hand_send(_: Scanner) -> None:  # as docs/outbound.md once suggested: any test mail
        with smtplib.SMTP("127.0.0.1", relay["good"].port, timeout=5) as smtp:
            smtp.sendmail("admin@contoso.com", [f"test@{PROBE_DOMAIN}"], "Subject: t\r\n\r\nx")

    while_listening(config, hand_send, lambda: captures(config) >= 1)
    assert newest_client(config, "broken")[0] == "no_client_cert"
    assert ("broken", "outbound.no_client_certificate", "open") in alerts(config)
    assert sql(config, "SELECT count(*) FROM outbox WHERE kind = 'resolved'") == [(0,)]
    main(["report", "--config", str(config), "--format", "json"])
    (connector,) = json.loads(capsys.readouterr().out)["connectors"]
    assert all(s["works"] is False for s in connector["scenarios"])


def test_forged_sessions_open_and_resolve_nothing(
    capsys: pytest.CaptureFixture[str],
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    relays: Callable[..., DemoRelay],
    covering: ClientTLS,
    write_chain,  # type: ignore[no-untyped-def]
    good_leaf: pki.Issued,
    intermediate: pki.Issued,
) -> None:
    config, _ = fleet(config_file, served, relays, {"broken": ClientTLS(tls=True)})
    assert main(["run", "--once", "--config", str(config)]) == 0
    before = alerts(config)
    assert ("broken", "outbound.no_client_certificate", "open") in before
    port = load(config).capture.addresses()[0][1]  # type: ignore[union-attr]
    forged = "1" + "ab" * 25  # the token layout, without the installation's secret

    def forge(_: Scanner) -> None:
        # From the endpoint's own address with a covering certificate: would resolve the alert.
        with smtplib.SMTP("127.0.0.1", port, timeout=5, local_hostname="broken.contoso.com") as s:
            s.starttls(context=client_tls(*write_chain(good_leaf, intermediate)))
            s.sendmail("a@contoso.com", [f"rc-{forged}@{PROBE_DOMAIN}"], "x")
        # From elsewhere, with the endpoint's host name as EHLO and no TLS: would open no_tls.
        other = {"local_hostname": "broken.contoso.com", "source_address": ("127.0.0.3", 0)}
        with smtplib.SMTP("127.0.0.1", port, timeout=5, **other) as s:  # type: ignore[arg-type]
            s.sendmail("a@contoso.com", [f"x@{PROBE_DOMAIN}"], "x")
        # A hostile EHLO name and sender: control characters never reach the store.
        hostile = {"local_hostname": "evil\x1b[2J\x07.test", "source_address": ("127.0.0.4", 0)}
        with smtplib.SMTP("127.0.0.1", port, timeout=5, **hostile) as s:  # type: ignore[arg-type]
            s.sendmail("a\x1b]0;x\x07@contoso.com", [f"y@{PROBE_DOMAIN}"], "x")

    while_listening(config, forge, lambda: captures(config) >= 3)
    assert alerts(config) == before  # nothing opened, nothing resolved
    assert newest_client(config, "broken")[0] == "no_client_cert"
    # The listener judges sessions concurrently: rows are keyed by peer, not by their order.
    rows = {
        peer: (endpoint, ehlo, session)
        for peer, endpoint, ehlo, session in sql(
            config, "SELECT peer, endpoint, ehlo, session FROM capture"
        )
    }
    assert set(rows) == {"127.0.0.1", "127.0.0.3", "127.0.0.4"}
    _, ehlo, mail_from = rows["127.0.0.4"]
    assert "evil" in ehlo and "\x1b" not in ehlo and "\x07" not in ehlo
    assert "\\u001b" not in mail_from and "\x1b" not in mail_from
    assert all(endpoint is None for endpoint, _, _ in rows.values())
    assert "not issued by this installation" in json.loads(rows["127.0.0.1"][2])["reason"]
    assert json.loads(rows["127.0.0.3"][2])["reason"] == "no relaycert token in the recipients"
    doc = report(config, capsys)
    assert doc["unattributed_total"] == 3
    assert {c["peer"] for c in doc["unattributed"]} == {"127.0.0.1", "127.0.0.3", "127.0.0.4"}


def test_a_late_probe_is_its_own_endpoints_never_its_neighbours(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    relays: Callable[..., DemoRelay],
    covering: ClientTLS,
) -> None:
    config, _ = fleet(
        config_file,
        served,
        relays,
        {"good": covering, "broken": ClientTLS(tls=True)},
        wait="1s",
        delays={"broken": 2.0},  # arrives after its check gave up
    )
    loaded = load(config)

    async def scan(scanner: Scanner) -> None:
        await scanner.scan(loaded.endpoints)

    def late_stored() -> bool:
        return (
            len(sql(config, "SELECT id FROM observation WHERE direction != 'from_exchange_online'"))
            >= 3
        )

    while_listening(config, scan, late_stored)
    assert newest_client(config, "good")[0] == "ok"  # untouched by its neighbour's late probe
    status, session = newest_client(config, "broken")
    assert status == "no_client_cert" and session["late"] is True and session["late_by_s"] >= 1


def test_a_miss_never_resolves_the_client_certificate_alert(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    relays: Callable[..., DemoRelay],
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, relay = fleet(config_file, served, relays, {"broken": ClientTLS(tls=True)}, wait="1s")
    assert main(["run", "--once", "--config", str(config)]) == 0
    assert ("broken", "outbound.no_client_certificate", "open") in alerts(config)
    relay["broken"].forwarder.next_hop = None  # the probe stops arriving
    assert main(["run", "--once", "--config", str(config)]) == 0
    assert newest_client(config, "broken")[0] == "not_delivered"
    assert ("broken", "outbound.no_client_certificate", "open") in alerts(config)
    assert ("broken", "outbound.not_delivered", "open") in alerts(config)
    assert sql(config, "SELECT count(*) FROM outbox WHERE kind = 'resolved'") == [(0,)]
    # status and /metrics keep the last known finding beside the miss, marked as such
    capsys.readouterr()
    main(["status", "--config", str(config), "--format", "json"])
    (row,) = [
        a
        for a in json.loads(capsys.readouterr().out)["addresses"]
        if a["direction"] == "to_exchange_online"
    ]
    assert row["status"] == "not_delivered" and row["last_seen"] is not None
    assert row["worst_finding"] == "critical"
    from prometheus_client import CollectorRegistry, generate_latest

    from monitor.service.metrics import StoreCollector

    store = Store.open(load(config).database_url())
    try:
        registry = CollectorRegistry()
        registry.register(StoreCollector(store, lambda: None))
        exposition = generate_latest(registry).decode()
    finally:
        store.close()
    assert 'rule="outbound.no_client_certificate"' in exposition
    assert "relaycert_unattributed_captures 0.0" in exposition


def report(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    main(["report", "--config", str(config), "--format", "json"])
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_an_unmeasured_endpoint_never_improves_the_relay_verdict(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    relays: Callable[..., DemoRelay],
    covering: ClientTLS,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clients = {"good": covering, "broken": ClientTLS(tls=True), "silent": None}
    config, relay = fleet(config_file, served, relays, clients, wait="1s")
    main(["scan", "--config", str(config), "--format", "json"])
    relay["broken"].forwarder.next_hop = None  # its last known client certificate: none
    main(["scan", "--config", str(config), "--format", "json"])
    doc = report(config, capsys)
    (connector,) = doc["connectors"]
    for scenario in connector["scenarios"]:
        assert scenario["works"] is False  # the known-bad endpoint counts while unmeasured
        assert "broken" in scenario["evidence"] and "last seen" in scenario["evidence"]
        assert "silent" in scenario["evidence"] and "not measured" in scenario["evidence"]
    (row,) = [
        a
        for a in doc["addresses"]
        if a["endpoint"] == "broken" and a["direction"] != "from_exchange_online"
    ]
    assert row["last_seen"] is not None
    assert any(f[1] == "outbound.no_client_certificate" for f in row["findings"])


def test_unmeasured_endpoints_make_the_verdict_unknown_and_are_named(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    relays: Callable[..., DemoRelay],
    covering: ClientTLS,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One endpoint works and the others' probes never arrive (refused by a rate limit, a
    broken route): the verdict is not "works" on the one that was measured."""
    clients = {"good": covering, **{f"quiet{i}": None for i in range(1, 7)}}
    config, _ = fleet(config_file, served, relays, clients, wait="1s")
    main(["scan", "--config", str(config), "--format", "json"])
    (connector,) = report(config, capsys)["connectors"]
    for scenario in connector["scenarios"]:
        assert scenario["works"] is None
        assert "6 of 7 not measured" in scenario["evidence"]
        assert all(f"quiet{i}" in scenario["evidence"] for i in range(1, 7))


def test_the_capture_listener_serves_its_senders_under_a_flood(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    relays: Callable[..., DemoRelay],
    covering: ClientTLS,
) -> None:
    """100 slow sessions from 5 other addresses (20 each: the per-peer cap) while the real
    probes come: the on-prem server's address keeps reserved room, so they are delivered."""
    config, _ = fleet(config_file, served, relays, {"mail1": covering, "mail2": covering})
    loaded = load(config)
    port = loaded.capture.addresses()[0][1]  # type: ignore[union-attr]
    held: list[asyncio.StreamWriter] = []

    async def flood_then_scan(scanner: Scanner) -> None:
        async def slow(address: str) -> None:
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, local_addr=(address, 0)
                )
            except OSError:
                return
            held.append(writer)
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(reader.readline(), 5)
                for _ in range(30):  # slow but never idle: a NOOP a second
                    writer.write(b"NOOP\r\n")
                    await asyncio.sleep(1)

        tasks = [asyncio.create_task(slow(f"127.0.0.{2 + i % 5}")) for i in range(100)]
        await asyncio.sleep(1.0)  # every slot the flood can take is taken
        records = await scanner.scan(loaded.endpoints)
        client = [r for r in records if r.result.target.mode == "outbound"]
        assert [r.result.status.value for r in client] == ["ok", "ok"]
        for writer in held:
            writer.transport.abort()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    while_listening(config, flood_then_scan, lambda: True)


def test_the_reports_small_print_counts_what_it_does_not_name(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    relays: Callable[..., DemoRelay],
    covering: ClientTLS,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clients: dict[str, ClientTLS | None] = {f"relay{i}": covering for i in range(1, 8)}
    config, _ = fleet(config_file, served, relays, clients)
    main(["scan", "--config", str(config), "--format", "json"])
    doc = report(config, capsys)
    (connector,) = doc["connectors"]
    assert connector["scenarios"][0]["works"] is True
    assert "all 7 work" in connector["scenarios"][0]["evidence"]
    assert connector["scenarios"][0]["evidence"].endswith(" and 2 more")
    client = [a for a in doc["addresses"] if a["direction"] == "to_exchange_online"]
    assert [(a["attempts"], a["successes"]) for a in client] == [(1, 1)] * 7
    main(["report", "--config", str(config), "--format", "html"])
    html = capsys.readouterr().out
    assert "1 of 1 outbound checks arrived" in html and "0 of 0" not in html
    # Only `relaycert scan` wrote this store: status claims no daemon.
    main(["status", "--config", str(config)])
    assert "the daemon is probing" not in capsys.readouterr().out


def test_a_submission_host_does_not_rename_the_endpoint(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    relays: Callable[..., DemoRelay],
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    relay = relays(("127.0.0.1", port), ClientTLS(tls=True))
    outbound = outbound_toml(relay.port) + 'submit_host = "localhost"\n'
    config = config_file(endpoint_toml("mail1", served.port) + outbound, extra=capture_toml(port))
    main(["scan", "--config", str(config), "--format", "json"])
    results = json.loads(capsys.readouterr().out)["results"]
    (client,) = [r for r in results if r["direction"] == "to_exchange_online"]
    assert client["status"] == "no_client_cert"
    assert client["host"] == "mail1.contoso.com"  # what alert subjects name, not "localhost"


def test_a_probe_arriving_before_its_miss_is_stored_takes_the_miss_place(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    relays: Callable[..., DemoRelay],
) -> None:
    """The check gave up at 1 s, its probe arrives at 1.5 s, the scan stores at 2 s: the
    endpoint's newest result is what arrived (late), not a miss on top of it."""
    config, _ = fleet(
        config_file, served, relays, {"slow": ClientTLS(tls=True)}, wait="1s", delays={"slow": 1.5}
    )
    loaded = load(config)

    async def check_then_store_later(scanner: Scanner) -> None:
        results = await scanner.outbound_checks(loaded.endpoints)
        assert [r.status.value for r in results] == ["not_delivered"]
        await asyncio.sleep(1.5)  # the served probes of a large scan are still running
        await scanner.judge_and_store(results, results[0].started_at)

    while_listening(config, check_then_store_later, lambda: True)
    status, session = newest_client(config, "slow")
    assert status == "no_client_cert" and session["late"] is True
    statuses = sql(config, "SELECT status FROM observation WHERE direction = 'to_exchange_online'")
    assert ("not_delivered",) not in statuses


def test_a_replay_after_a_restart_never_improves_the_verdict(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    relays: Callable[..., DemoRelay],
    covering: ClientTLS,
    write_chain,  # type: ignore[no-untyped-def]
    good_leaf: pki.Issued,
    intermediate: pki.Issued,
) -> None:
    """The newest check's token, read from a log or the store, delivered again after a restart
    (the new listener holds none of that check's deliveries) with a certificate that would
    resolve the alert: judged with the stored result, the worse stands, and
    ``capture.token_reused`` names both deliveries."""
    config, _ = fleet(config_file, served, relays, {"broken": ClientTLS(tls=True)})
    assert main(["run", "--once", "--config", str(config)]) == 0
    assert ("broken", "outbound.no_client_certificate", "open") in alerts(config)
    token = newest_client(config, "broken")[1]["token"]  # as read from a log or the store
    port = load(config).capture.addresses()[0][1]  # type: ignore[union-attr]

    def replay(_: Scanner) -> None:
        other = {"local_hostname": "replay.fabrikam.test", "source_address": ("127.0.0.3", 0)}
        with smtplib.SMTP("127.0.0.1", port, timeout=5, **other) as s:  # type: ignore[arg-type]
            s.starttls(context=client_tls(*write_chain(good_leaf, intermediate)))
            s.sendmail("a@contoso.com", [f"rc-{token}@{PROBE_DOMAIN}"], "x")

    while_listening(config, replay, lambda: captures(config) >= 1)
    status, session = newest_client(config, "broken")
    assert status == "no_client_cert"
    assert [d["peer"] for d in session["deliveries"]] == ["127.0.0.1", "127.0.0.3"]
    assert ("broken", "outbound.no_client_certificate", "open") in alerts(config)
    assert sql(config, "SELECT count(*) FROM outbox WHERE kind = 'resolved'") == [(0,)]
    severity, message = newest_findings(config, "broken")["capture.token_reused"]
    assert severity == "warning" and "127.0.0.3" in message and "replay.fabrikam.test" in message
    (kind,) = [json.loads(s)["kind"] for (s,) in sql(config, "SELECT session FROM capture")]
    assert kind == "again"


def test_a_replay_of_an_older_check_changes_nothing(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    relays: Callable[..., DemoRelay],
    covering: ClientTLS,
) -> None:
    """A token of a check that a newer one superseded counts for nothing: only the newest
    check's evidence is the verdict."""
    config, _ = fleet(config_file, served, relays, {"good": covering})
    assert main(["run", "--once", "--config", str(config)]) == 0
    token = newest_client(config, "good")[1]["token"]
    time.sleep(1.1)  # token times are whole seconds
    assert main(["run", "--once", "--config", str(config)]) == 0
    port = load(config).capture.addresses()[0][1]  # type: ignore[union-attr]

    def replay(_: Scanner) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as s:
            s.starttls(context=client_tls())  # TLS without a client certificate
            s.sendmail("a@contoso.com", [f"rc-{token}@{PROBE_DOMAIN}"], "x")

    while_listening(config, replay, lambda: captures(config) >= 1)
    assert newest_client(config, "good")[0] == "ok"
    assert not any(rule == "outbound.no_client_certificate" for _, rule, _ in alerts(config))
    (kind,) = [json.loads(s)["kind"] for (s,) in sql(config, "SELECT session FROM capture")]
    assert kind == "late, superseded"


def test_a_newer_measured_failure_survives_an_outage(
    config_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """ok, then a failed handshake (measured, critical), then unreachable: the failure is what
    is last known, not the older success."""
    from datetime import UTC, datetime, timedelta

    from checks.base import Finding, ProbeStatus, Severity
    from monitor.results import ProbeResult, ProbeTarget, ScanRecord
    from monitor.store import writes

    config = config_file(endpoint_toml("mail1", 25))
    store = Store.open(load(config).database_url())
    target = ProbeTarget("mail1", "mail1.contoso.com", 25, "127.0.0.1", "starttls", "x", 5)
    start = datetime.now(UTC) - timedelta(hours=1)
    steps = [
        (ProbeStatus.OK, ()),
        (
            ProbeStatus.HANDSHAKE_FAILED,
            (Finding("tls.handshake_failed", Severity.CRITICAL, "handshake failed"),),
        ),
        (ProbeStatus.UNREACHABLE, (Finding("probe.unreachable", Severity.UNKNOWN, "timeout"),)),
    ]
    try:
        for i, (status, findings) in enumerate(steps):
            result = ProbeResult(target, start + timedelta(minutes=10 * i), status)
            writes.record(store, [ScanRecord(result, (), findings, "starttls", "relay")])
    finally:
        store.close()
    doc = report(config, capsys)
    (connector,) = doc["connectors"]
    assert connector["delivery"]["works"] is False
    assert "tls.handshake_failed" in connector["delivery"]["evidence"]
    main(["status", "--config", str(config), "--format", "json"])
    (row,) = json.loads(capsys.readouterr().out)["addresses"]
    assert row["status"] == "unreachable" and row["worst_finding"] == "critical"


HOSTILE_DIALOGUES = {
    "starttls-refused": [
        b"220 mx.test ESMTP \x1b[31mred\x07\r\n",
        b"250-mx.test \x1b[2J\r\n250 STARTTLS\r\n",
        b"454 4.7.0 \x1b[2J\x1b]0;pwned\x07 go away\r\n",
    ],
    "malformed-greeting": [b"\x1b[2J\x1b]0;pwned\x07 go away\r\n"],
    "busy-greeting": [b"421-mx.test \x1b[2J\r\n421 4.3.2 \x1b]0;pwned\x07 go away\r\n"],
}


@pytest.mark.parametrize("dialogue", sorted(HOSTILE_DIALOGUES))
def test_a_hostile_reply_never_carries_control_characters_onward(
    config_file: Callable[..., Path], capsys: pytest.CaptureFixture[str], dialogue: str
) -> None:
    """A server's reply is attacker-controlled text: ESC and BEL reach neither the store, nor
    the table, nor the HTML report (#25), whatever step it fails."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    lines = HOSTILE_DIALOGUES[dialogue]

    def serve() -> None:
        listener.settimeout(10)
        for _ in range(8):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                conn.settimeout(5)
                conn.sendall(lines[0])
                for line in lines[1:]:
                    conn.recv(1024)
                    conn.sendall(line)
                conn.recv(1024)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    config = config_file(endpoint_toml("mail1", port))
    main(["scan", "--config", str(config)])
    table = capsys.readouterr().out
    main(["report", "--config", str(config), "--format", "html"])
    html = capsys.readouterr().out
    listener.close()
    stored = " ".join(
        str(value)
        for row in sql(config, "SELECT error, banner, status FROM observation")
        + sql(config, "SELECT message, rule, severity FROM finding")
        for value in row
    )
    assert "go away" in stored  # the reply was stored...
    for shown in (table, html, stored):  # ...without its control characters, and shown so
        assert "\x1b" not in shown and "\x07" not in shown
    assert_no_control_characters(config)


def assert_no_control_characters(config: Path) -> None:
    """Not in any column of any table, JSON ones included (#35: 17 ESC and 30 BEL were still
    stored, in EHLO lists, sessions and certificate fields, though no output showed them)."""
    import sqlite3

    with sqlite3.connect(load(config).database_url().removeprefix("sqlite:///")) as db:
        dump = "\n".join(db.iterdump())
    for control in ("\x1b", "\x07", "\\u001b", "\\u0007"):
        assert control not in dump, control


def test_a_hostile_certificate_and_ehlo_leave_no_control_character_in_the_store(
    config_file: Callable[..., Path],
    smtp_server,  # type: ignore[no-untyped-def]
    write_chain,  # type: ignore[no-untyped-def]
    intermediate: pki.Issued,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Certificate names, EHLO lines and every message made from them are stored printable;
    the names still compare equal to the stored baseline (no drift from the cleaning)."""
    hostile = "mail1.contoso.com\x1b]0;pwned\x07"
    leaf = pki.make_leaf(intermediate, ["mail1.contoso.com", "x\x1b[2J.contoso.com"], cn=hostile)
    server = smtp_server("starttls", *write_chain(leaf, intermediate))
    config = config_file(endpoint_toml("mail1", server.port))
    for _ in range(2):
        main(["scan", "--config", str(config), "--format", "json"])
        result = json.loads(capsys.readouterr().out)["results"][0]
        assert not [f for f in result["findings"] if f["rule"].startswith("drift.")], result
    assert_no_control_characters(config)
    (subject,) = sql(config, "SELECT subject FROM certificate WHERE subject LIKE '%pwned%'")
    assert subject[0].startswith("CN=mail1.contoso.com\ufffd") and "pwned\ufffd" in subject[0]
