"""Outbound checks end to end on loopback: relaycert submits a probe message through an on-prem
relay (in-process here; Debian's Postfix in test_postfix_outbound.py), the relay forwards it to
the capture listener with its own client TLS settings, and the verdict is about *that*
certificate, in the ``to_exchange_online`` direction, stored and alerted separately from the
served one."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from checks.base import Direction
from monitor.cli.app import main
from monitor.config.loader import load
from monitor.demo import pki
from monitor.demo.relay import ClientTLS, DemoRelay
from monitor.demo.servers import LoopbackSMTP, free_port
from tests.conftest import endpoint_toml

PROBE_DOMAIN = "probe.contoso.test"


def capture_toml(port: int, wait: str = "5s", misses: int = 2, linger: str = "1s") -> str:
    return (
        f'\n[capture]\nlisten = ["127.0.0.1:{port}"]\nprobe_domains = ["{PROBE_DOMAIN}"]\n'
        f'wait = "{wait}"\nmisses_critical = {misses}\ntimeout = "3s"\nlinger = "{linger}"\n'
    )


def outbound_toml(relay_port: int) -> str:
    return f'[endpoints.outbound]\nsubmit_port = {relay_port}\nstarttls = "none"\n'


@pytest.fixture
def relays() -> Iterator[Callable[..., DemoRelay]]:
    started: list[DemoRelay] = []

    def start(next_hop: tuple[str, int] | None, client: ClientTLS) -> DemoRelay:
        relay = DemoRelay(next_hop, client).start()
        started.append(relay)
        return relay

    yield start
    for relay in started:
        relay.stop()


def scan_json(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, list[dict]]:  # type: ignore[type-arg]
    main(["scan", "--config", str(config), "--format", "json"])
    results = json.loads(capsys.readouterr().out)["results"]
    by_direction: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for result in results:
        by_direction.setdefault(result["direction"], []).append(result)
    return by_direction


def rules(result: dict) -> set[str]:  # type: ignore[type-arg]
    return {f["rule"] for f in result["findings"]}


@pytest.fixture
def served(
    smtp_server: Callable[..., LoopbackSMTP],
    write_chain,  # type: ignore[no-untyped-def]
    good_leaf: pki.Issued,
    intermediate: pki.Issued,
) -> LoopbackSMTP:
    """The endpoint's listener: a compliant served certificate."""
    return smtp_server("starttls", *write_chain(good_leaf, intermediate))


def setup(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    relays: Callable[..., DemoRelay],
    client: ClientTLS,
    route: bool = True,
    wait: str = "5s",
    more_endpoints: str = "",
) -> Path:
    port = free_port()
    relay = relays(("127.0.0.1", port) if route else None, client)
    return config_file(
        endpoint_toml("mail1", served.port) + outbound_toml(relay.port) + more_endpoints,
        extra=capture_toml(port, wait),
    )


@pytest.fixture
def covering_client(write_chain, good_leaf: pki.Issued, intermediate: pki.Issued) -> ClientTLS:  # type: ignore[no-untyped-def]
    """The relay's client TLS with a certificate that covers the connector."""
    key, chain = write_chain(good_leaf, intermediate)
    return ClientTLS(True, key, chain)


def test_no_client_certificate_is_critical_on_the_outbound_result_only(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    relays: Callable[..., DemoRelay],
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = setup(config_file, served, relays, ClientTLS(tls=True))
    found = scan_json(config, capsys)
    (inbound,) = found[Direction.FROM_EXO.value]
    (outbound,) = found[Direction.TO_EXO.value]
    assert inbound["findings"] == [] or all(f["severity"] == "info" for f in inbound["findings"])
    assert outbound["status"] == "no_client_cert"
    assert [(f["rule"], f["severity"]) for f in outbound["findings"]] == [
        ("outbound.no_client_certificate", "critical")
    ]
    assert outbound["findings"][0]["direction"] == "to_exchange_online"
    assert outbound["session"]["tokens"] and outbound["session"]["tls"] is True


def test_covering_client_certificate_has_no_finding_and_matching_is_by_token(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    relays: Callable[..., DemoRelay],
    covering_client: ClientTLS,
    good_leaf: pki.Issued,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = setup(config_file, served, relays, covering_client)
    (outbound,) = scan_json(config, capsys)[Direction.TO_EXO.value]
    assert outbound["status"] == "ok"
    assert outbound["sha256"] == pki_sha(good_leaf)
    assert [f for f in outbound["findings"] if f["severity"] != "info"] == []


def pki_sha(issued: pki.Issued) -> str:
    from checks.certinfo import fingerprint

    return fingerprint(issued.cert)


def test_client_certificate_for_another_domain_and_leaf_only(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    relays: Callable[..., DemoRelay],
    write_chain,  # type: ignore[no-untyped-def]
    intermediate: pki.Issued,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other = pki.make_leaf(intermediate, ["mail.fabrikam.net"])
    config = setup(config_file, served, relays, ClientTLS(True, *write_chain(other, intermediate)))
    (outbound,) = scan_json(config, capsys)[Direction.TO_EXO.value]
    assert "connector.name_not_covered" in rules(outbound)
    assert "outbound.differs_from_served" in rules(outbound)
    assert "cert.hostname_mismatch" not in rules(outbound)  # a client is not named by host

    leaf_only = pki.make_leaf(intermediate, ["relay.contoso.com"])
    config = setup(config_file, served, relays, ClientTLS(True, *write_chain(leaf_only)))
    (outbound,) = scan_json(config, capsys)[Direction.TO_EXO.value]
    assert "cert.untrusted" in rules(outbound)


def test_no_tls_and_missing_route(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    relays: Callable[..., DemoRelay],
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = setup(config_file, served, relays, ClientTLS(tls=False))
    (outbound,) = scan_json(config, capsys)[Direction.TO_EXO.value]
    assert outbound["status"] == "no_tls" and rules(outbound) == {"outbound.no_tls"}

    config = setup(config_file, served, relays, ClientTLS(), route=False, wait="1s")
    first = scan_json(config, capsys)[Direction.TO_EXO.value][0]
    assert first["status"] == "not_delivered"
    assert [(f["rule"], f["severity"]) for f in first["findings"]] == [
        ("outbound.not_delivered", "unknown")
    ]
    second = scan_json(config, capsys)[Direction.TO_EXO.value][0]  # misses_critical = 2
    assert [(f["rule"], f["severity"]) for f in second["findings"]] == [
        ("outbound.not_delivered", "critical")
    ]


def test_daemon_alerts_per_direction(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    relays: Callable[..., DemoRelay],
    tmp_path: Path,
) -> None:
    config = setup(config_file, served, relays, ClientTLS(tls=True))
    assert main(["run", "--once", "--config", str(config)]) == 0
    engine = create_engine(load(config).database_url())
    with engine.connect() as conn:
        alerts = conn.execute(text("SELECT rule, direction, status FROM alert")).all()
        observations = conn.execute(text("SELECT direction, status FROM observation")).all()
        endpoint = conn.execute(text("SELECT port, mode FROM endpoint")).one()
    engine.dispose()
    assert tuple(endpoint) == (served.port, "starttls")  # the listener, not the submission port
    assert ("outbound.no_client_certificate", "to_exchange_online", "open") in alerts
    assert all(direction == "to_exchange_online" for _, direction, _ in alerts)
    assert sorted(observations) == [
        ("from_exchange_online", "ok"),
        ("to_exchange_online", "no_client_cert"),
    ]


@contextmanager
def send_soon(
    port: int, rcpt: str, body: str, *, starttls: bool = False, **smtp: Any
) -> Iterator[None]:
    """Send one message to the capture listener from a thread (retrying until it listens), while
    the block runs ``relaycert capture --once``."""
    import smtplib
    import threading
    import time

    def send() -> None:
        for _ in range(50):
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=5, **smtp) as client:
                    if starttls:
                        client.starttls()
                    client.sendmail("a@contoso.com", [rcpt], body)
                return
            except OSError:
                time.sleep(0.1)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        yield
    finally:
        sender.join()


def test_capture_once_issues_a_test_token_and_judges_only_that_send(
    config_file: Callable[..., Path], served: LoopbackSMTP
) -> None:
    """The hand test send as an operator does it: ``relaycert capture --once`` prints a
    recipient with a signed test token; a message without it does not end the wait; the one
    sent to it is judged, kept as a test capture, never as an endpoint's result."""
    import smtplib
    import subprocess
    import sys

    port = free_port()
    config = config_file(endpoint_toml("mail1", served.port), extra=capture_toml(port))
    command = [sys.executable, "-m", "monitor", "capture", "--once", "--config", str(config)]
    process = subprocess.Popen(
        [*command, "--timeout", "20", "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        recipient = ""
        for line in process.stderr:
            if line.startswith("send a test message to "):
                recipient = line.split()[-1]
                break
        assert recipient.startswith("rc-2") and recipient.endswith(f"@{PROBE_DOMAIN}")
        body = "Subject: t\r\n\r\nBODY-MARKER-7f3a\r\n"
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            client.sendmail("a@contoso.com", [f"stray@{PROBE_DOMAIN}"], body)  # not the token
            client.sendmail("a@contoso.com", [recipient], body)
        out, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    result = json.loads(out)
    assert process.returncode == 2
    assert result["direction"] == "to_exchange_online" and result["status"] == "no_tls"
    assert result["session"]["recipients"] == [recipient]
    stored = b"".join(p.read_bytes() for p in config.parent.glob("relaycert.db*"))
    assert recipient.encode() in stored  # the envelope is kept...
    assert b"BODY-MARKER-7f3a" not in stored  # ...the body never is
    engine = create_engine(load(config).database_url())
    with engine.connect() as conn:
        kinds = conn.execute(text("SELECT endpoint, session FROM capture")).all()
        observations = conn.execute(text("SELECT count(*) FROM observation")).scalar()
    engine.dispose()
    assert sorted(json.loads(session)["kind"] for _, session in kinds) == ["test", "unattributed"]
    assert all(endpoint is None for endpoint, _ in kinds) and observations == 0


def test_outbound_without_capture_section_is_a_config_error(
    config_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(endpoint_toml("mail1", 25) + outbound_toml(2525))
    assert main(["scan", "--config", str(config)]) == 3
    err = capsys.readouterr().err
    assert "endpoints[0] (mail1).outbound" in err and "[capture]" in err


def test_report_shows_both_directions_per_connector(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    relays: Callable[..., DemoRelay],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Without an outbound check the relay verdict is inferred from the served certificate.
    plain = config_file(endpoint_toml("mail1", served.port))
    main(["scan", "--config", str(plain), "--format", "json"])
    capsys.readouterr()
    main(["report", "--config", str(plain), "--format", "json"])
    (relay,) = json.loads(capsys.readouterr().out)["connectors"]
    assert relay["relay_inferred"] is True and "inferred from the served" in relay["relay_basis"]
    assert [s["works"] for s in relay["scenarios"]] == [True, True, True]

    # With one, it is measured: no client certificate breaks relaying (ATTR36) while delivery
    # from Exchange Online (the served certificate) still works.
    config = setup(config_file, served, relays, ClientTLS(tls=True))
    main(["scan", "--config", str(config), "--format", "json"])
    capsys.readouterr()
    main(["report", "--config", str(config), "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    (relay,) = doc["connectors"]
    assert relay["relay_inferred"] is False
    assert all(s["works"] is False and "ATTR36" in s["error"] for s in relay["scenarios"])
    assert "outbound.no_client_certificate" in relay["scenarios"][0]["evidence"]
    assert relay["delivery"]["works"] is True
    assert {a["direction"] for a in doc["addresses"]} == {
        "from_exchange_online",
        "to_exchange_online",
    }
    main(["report", "--config", str(config), "--format", "html"])
    html = capsys.readouterr().out
    assert "Relay to Exchange Online" in html and "Delivery from Exchange Online" in html


def test_unattributed_capture_is_listed_by_status_and_pruned(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import time

    port = free_port()
    config = config_file(endpoint_toml("mail1", served.port), extra=capture_toml(port))
    # From another loopback address and name, with no token: attributed to no check.
    stranger = {"local_hostname": "stranger.fabrikam.test", "source_address": ("127.0.0.2", 0)}
    with send_soon(port, f"hello@{PROBE_DOMAIN}", "Subject: t\r\n\r\nx", starttls=True, **stranger):
        assert main(["capture", "--once", "--config", str(config), "--timeout", "3"]) == 3
    capsys.readouterr()
    # No daemon probes here: the heartbeat is overdue, so status is UNKNOWN.
    assert main(["status", "--config", str(config), "--format", "json"]) == 3
    (unattributed,) = json.loads(capsys.readouterr().out)["unattributed_captures"]
    assert unattributed["peer"] == "127.0.0.2"
    assert unattributed["ehlo"] == "stranger.fabrikam.test"
    assert unattributed["endpoint"] is None and unattributed["worst"] == "critical"
    assert unattributed["kind"] == "unattributed"
    assert unattributed["reason"] == "no relaycert token in the recipients"
    assert any("outbound.no_client_certificate" in f for f in unattributed["findings"])
    assert main(["status", "--config", str(config)]) == 3
    assert "attributed to no check" in capsys.readouterr().out
    time.sleep(1.1)
    assert main(["prune", "--config", str(config), "--older-than", "1s"]) == 0
    assert "1 captures" in capsys.readouterr().out


def test_messages_say_which_direction() -> None:
    from notifications.render import adaptive_card, html_body, subject, text_body
    from tests.test_channels import note as make_note

    note = make_note(
        "relayed without a client certificate",
        rule="outbound.no_client_certificate",
        title="No client certificate presented when relaying",
        direction="to_exchange_online",
    )
    assert "(relay client)" in subject(note)
    assert "Direction: relay to Exchange Online (client certificate)" in text_body(note)
    assert "relay to Exchange Online (client certificate)" in html_body(note)
    facts = adaptive_card(note)["attachments"][0]["content"]["body"][1]["facts"]
    assert {
        "title": "Direction",
        "value": "relay to Exchange Online \\(client certificate\\)",
    } in facts


def test_a_scan_with_probe_workers_waits_for_the_outbound_check(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    relays: Callable[..., DemoRelay],
    covering_client: ClientTLS,
) -> None:
    """With probe workers an endpoint is judged as soon as its addresses are back; one with an
    outbound check waits for it (its verdict compares with what the listener served), and the
    records are the one-batch scan's, in its order."""
    from datetime import UTC, datetime

    from checks.certinfo import fingerprint
    from monitor import aio
    from monitor.pipeline.oneshot import scan
    from monitor.probe.workers import ProbePool

    more = endpoint_toml("mail2", served.port)
    config = load(setup(config_file, served, relays, covering_client, more_endpoints=more))

    def run(pool: ProbePool | None) -> list[tuple[Any, ...]]:
        records = aio.run(scan(config, None, now=datetime.now(UTC), pool=pool))
        return [
            (
                r.result.target.endpoint,
                r.result.target.direction,
                r.result.status.value,
                fingerprint(r.chain[0]) if r.chain else None,
                sorted(f.rule for f in r.findings),
            )
            for r in records
        ]

    pool = ProbePool(2)
    try:
        pooled = run(pool)
    finally:
        pool.close()
    assert pooled == run(None)
    assert [p[:3] for p in pooled] == [
        ("mail1", Direction.FROM_EXO, "ok"),
        ("mail1", Direction.TO_EXO, "ok"),
        ("mail2", Direction.FROM_EXO, "ok"),
    ]


def busy_once_in_front_of(port: int) -> tuple[int, list[int], Callable[[], None]]:
    """A front for the relay at ``port`` that greets its first connection with a plain 421
    (a busy MTA) and passes every later one through: (front port, connection count, stop)."""
    import socket
    import threading

    front = socket.create_server(("127.0.0.1", 0))
    front.settimeout(0.2)
    count = [0]
    stopping = threading.Event()
    opened: list[socket.socket] = []

    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def serve() -> None:
        while not stopping.is_set():
            try:
                conn, _ = front.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            count[0] += 1
            conn.settimeout(None)
            opened.append(conn)
            if count[0] == 1:
                conn.sendall(b"421 4.3.2 relay.test Too many connections, try again later\r\n")
                conn.close()
                continue
            back = socket.create_connection(("127.0.0.1", port), timeout=5)
            back.settimeout(None)
            opened.append(back)
            threading.Thread(target=pump, args=(conn, back), daemon=True).start()
            threading.Thread(target=pump, args=(back, conn), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join(2)
        front.close()
        for sock in opened:
            sock.close()

    return front.getsockname()[1], count, stop


def test_a_busy_greeting_at_the_submission_is_retried_once(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    relays: Callable[..., DemoRelay],
    covering_client: ClientTLS,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The on-prem server greets the outbound check's submission with a 421 (busy): it is
    retried once, as a probe of the listener is, not reported as a check not delivered."""
    port = free_port()
    relay = relays(("127.0.0.1", port), covering_client)
    front, connections, stop = busy_once_in_front_of(relay.port)
    try:
        config = config_file(
            endpoint_toml("mail1", served.port) + outbound_toml(front),
            extra=capture_toml(port, "5s"),
        )
        (outbound,) = scan_json(config, capsys)[Direction.TO_EXO.value]
    finally:
        stop()
    assert connections[0] == 2, (outbound["status"], outbound.get("error"))
    assert outbound["status"] == "ok", outbound
