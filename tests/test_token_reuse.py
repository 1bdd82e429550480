"""A probe token is evidence only of what arrived with it, never first-come (issue #35, defect 2).

Tokens are in the on-prem server's mail log (it names every recipient) and cross the network in
clear when the relay sends without TLS, so whoever reads one can deliver it too.  Each test here
runs the capture listener for real on loopback, an on-prem relay that forwards the probe message
with its own client TLS, and an attacker (aiosmtplib, from 127.0.0.2 with its own EHLO name, with
or without STARTTLS and a client certificate minted here) who delivers the same token first or
later.  Every delivery is kept; when a token arrives more than once the verdict is the worse one
and ``capture.token_reused`` names every delivery; with ``relay_addresses`` a delivery from any
other peer counts for nothing and is ``capture.unlisted_peer``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller

from checks.certinfo import fingerprint
from monitor.cli.app import main
from monitor.config.loader import load
from monitor.demo import pki
from monitor.demo.relay import ClientTLS
from monitor.demo.servers import LoopbackSMTP, free_port
from monitor.errors import ConfigError
from monitor.pipeline.scan import Scanner
from tests.conftest import endpoint_toml
from tests.test_evidence import (
    alerts,
    captures,
    newest_client,
    newest_findings,
    sql,
    while_listening,
)
from tests.test_outbound import PROBE_DOMAIN, served

__all__ = ["served"]  # fixtures

ATTACKER, ATTACKER_EHLO = "127.0.0.2", "attacker.fabrikam.test"
RELAY_EHLO = "relay.contoso.test"


class RacedRelay:
    """The on-prem relay: it queues each probe message and forwards it ``forward_at`` seconds
    later from 127.0.0.1 with its client TLS.  With ``attack`` set (seconds, the attacker's
    TLS) the attacker, who read the recipient in the relay's mail log, delivers the same
    message from 127.0.0.2 at that time."""

    def __init__(self, capture_port: int, client: ClientTLS, forward_at: float) -> None:
        self.capture_port, self.client, self.forward_at = capture_port, client, forward_at
        self.attack: tuple[float, ClientTLS] | None = None
        self.sent: list[str] = []  # who delivered, in order
        self.errors: list[str] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, ready_timeout=10)

    def __enter__(self) -> RacedRelay:
        self._controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._controller.stop()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        task = asyncio.get_running_loop().create_task(self._deliver(envelope))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return "250 2.0.0 Ok: queued"

    async def _deliver(self, envelope: Any) -> None:
        steps = [(self.forward_at, "127.0.0.1", RELAY_EHLO, self.client)]
        if self.attack is not None:
            steps.append((self.attack[0], ATTACKER, ATTACKER_EHLO, self.attack[1]))
        loop = asyncio.get_running_loop()
        start = loop.time()
        for at, source, ehlo, tls in sorted(steps, key=lambda step: step[0]):
            await asyncio.sleep(max(0.0, start + at - loop.time()))
            try:
                await deliver(self.capture_port, source, ehlo, tls, envelope.rcpt_tos)
                self.sent.append(source)
            except (aiosmtplib.SMTPException, OSError) as exc:
                self.errors.append(f"{source}: {exc}")


async def deliver(port: int, source: str, ehlo: str, tls: ClientTLS, rcpt: list[str]) -> None:
    """One delivery to the capture listener from ``source``, as a relay makes it."""
    smtp = aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=port,
        source_address=(source, 0),
        local_hostname=ehlo,
        start_tls=False,
        timeout=10,
    )
    await smtp.connect()
    try:
        await smtp.ehlo()
        if tls.tls:
            await smtp.starttls(tls_context=tls.context())
        await smtp.sendmail("relaycert@contoso.com", rcpt, "Subject: probe\r\n\r\nx\r\n")
        await smtp.quit()
    finally:
        smtp.close()


def config_of(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    relay: RacedRelay,
    wait: str = "5s",
    outbound: str = "",
    capture: str = "",
) -> Path:
    return config_file(
        endpoint_toml("mail1", served.port)
        + f'[endpoints.outbound]\nsubmit_port = {relay.port}\nstarttls = "none"\n{outbound}',
        extra=(
            f'\n[capture]\nlisten = ["127.0.0.1:{relay.capture_port}"]\n'
            f'probe_domains = ["{PROBE_DOMAIN}"]\nwait = "{wait}"\ntimeout = "3s"\n{capture}'
        ),
    )


def capture_rows(config: Path) -> list[dict[str, Any]]:
    return [
        {"peer": peer, "endpoint": endpoint, **json.loads(session)}
        for peer, endpoint, session in sql(config, "SELECT peer, endpoint, session FROM capture")
    ]


@pytest.fixture
def covering(write_chain, good_leaf: pki.Issued, intermediate: pki.Issued) -> ClientTLS:  # type: ignore[no-untyped-def]
    """A client certificate that satisfies the connector (*.contoso.com, trusted)."""
    return ClientTLS(True, *write_chain(good_leaf, intermediate))


@pytest.fixture
def attacker_key(write_chain, intermediate: pki.Issued) -> ClientTLS:  # type: ignore[no-untyped-def]
    """The attacker's own key, for a certificate that satisfies the connector just as well."""
    stolen_name = pki.make_leaf(intermediate, ["attacker.contoso.com"])
    return ClientTLS(True, *write_chain(stolen_name, intermediate))


def test_a_leaked_token_sent_without_tls_is_seen_not_taken_for_the_relay(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    covering: ClientTLS,
    good_leaf: pki.Issued,
) -> None:
    """Attack 1: the token, read from the log, is delivered without TLS before the relay's own
    delivery.  Both deliveries are kept, the verdict is the worse (no TLS), and
    ``capture.token_reused`` names both peers, EHLO names, TLS and certificates: the relay's
    own delivery is not discarded as "already used"."""
    with RacedRelay(free_port(), covering, forward_at=1.0) as relay:
        relay.attack = (0.0, ClientTLS(tls=False))
        config = config_of(config_file, served, relay)
        assert main(["run", "--once", "--config", str(config)]) == 0
    status, session = newest_client(config, "mail1")
    assert status == "no_tls"
    found = newest_findings(config, "mail1")
    assert found["outbound.no_tls"][0] == "critical"
    assert "capture.token_reused" in found, found  # before: the relay's delivery was dropped
    assert relay.sent == [ATTACKER, "127.0.0.1"], relay.errors
    severity, message = found["capture.token_reused"]
    assert severity == "warning"
    assert "2 deliveries" in message
    for evidence in (ATTACKER, ATTACKER_EHLO, "without TLS", "127.0.0.1", RELAY_EHLO):
        assert evidence in message, (evidence, message)
    assert fingerprint(good_leaf.cert)[:16] in message  # the relay's certificate, named
    assert [d["peer"] for d in session["deliveries"]] == [ATTACKER, "127.0.0.1"]
    assert not any(c.get("reason") and "already used" in c["reason"] for c in capture_rows(config))


def test_with_relay_addresses_a_leaked_token_from_elsewhere_counts_for_nothing(
    config_file: Callable[..., Path], served: LoopbackSMTP, covering: ClientTLS
) -> None:
    """Attack 1 with ``relay_addresses``: the attacker's delivery is unattributed and
    ``capture.unlisted_peer`` (a security finding) names it; the verdict is the relay's."""
    with RacedRelay(free_port(), covering, forward_at=1.0) as relay:
        relay.attack = (0.0, ClientTLS(tls=False))
        config = config_of(
            config_file, served, relay, outbound='relay_addresses = ["127.0.0.1/32", "::1"]\n'
        )
        assert main(["run", "--once", "--config", str(config)]) == 0
    assert relay.sent == [ATTACKER, "127.0.0.1"], relay.errors
    status, session = newest_client(config, "mail1")
    assert status == "ok"
    assert [(d["peer"], d["counted"]) for d in session["deliveries"]] == [
        (ATTACKER, False),
        ("127.0.0.1", True),
    ]
    found = newest_findings(config, "mail1")
    assert "outbound.no_tls" not in found and "capture.token_reused" not in found
    severity, message = found["capture.unlisted_peer"]
    assert severity == "warning"
    assert ATTACKER in message and ATTACKER_EHLO in message and "relay_addresses" in message
    (stranger,) = [c for c in capture_rows(config) if c["peer"] == ATTACKER]
    assert stranger["endpoint"] is None and stranger["kind"] == "unattributed"
    assert "relay_addresses" in stranger["reason"]
    assert ("mail1", "outbound.no_tls", "open") not in alerts(config)


@pytest.mark.parametrize("listed", [False, True], ids=["no-list", "relay-addresses"])
def test_a_late_delivery_from_another_peer_never_improves_the_result(
    config_file: Callable[..., Path],
    served: LoopbackSMTP,
    attacker_key: ClientTLS,
    listed: bool,
) -> None:
    """Attack 2: the check gave up (1 s); the attacker delivers the token at 2 s from another
    address and EHLO with a good certificate, the relay's own delivery (no client certificate)
    follows at 3.5 s.  Without ``relay_addresses`` both count and the worse stands, with
    ``capture.token_reused``; with the list the attacker's is unattributed and the relay's is
    the result."""
    outbound = 'relay_addresses = ["127.0.0.1"]\n' if listed else ""
    with RacedRelay(free_port(), ClientTLS(tls=True), forward_at=3.5) as relay:
        relay.attack = (2.0, attacker_key)
        config = config_of(config_file, served, relay, wait="1s", outbound=outbound)
        loaded = load(config)

        async def scan(scanner: Scanner) -> None:
            await scanner.scan(loaded.endpoints)

        while_listening(config, scan, lambda: captures(config) >= 2)
    assert relay.sent == [ATTACKER, "127.0.0.1"], relay.errors
    status, session = newest_client(config, "mail1")
    assert status == "no_client_cert" and session["late"] is True
    found = newest_findings(config, "mail1")
    assert found["outbound.no_client_certificate"][0] == "critical"
    stranger = [c for c in capture_rows(config) if c["peer"] == ATTACKER]
    if listed:
        assert "capture.token_reused" not in found
        assert [d["peer"] for d in session["deliveries"] if d["counted"]] == ["127.0.0.1"]
        (row,) = stranger
        assert row["endpoint"] is None and "relay_addresses" in row["reason"]
        assert any("capture.unlisted_peer" in f for f in row["findings"])
    else:
        severity, message = found["capture.token_reused"]
        assert severity == "warning" and ATTACKER_EHLO in message and RELAY_EHLO in message
        assert [d["peer"] for d in session["deliveries"]] == [ATTACKER, "127.0.0.1"]


def test_racing_the_relay_with_a_valid_certificate_resolves_nothing(
    config_file: Callable[..., Path], served: LoopbackSMTP, attacker_key: ClientTLS
) -> None:
    """Attack 3: the relay sends without TLS (a real ``outbound.no_tls``); the attacker races it
    with its own key for a certificate that satisfies the connector.  The alert stays open, and
    ``capture.token_reused`` names both deliveries."""
    with RacedRelay(free_port(), ClientTLS(tls=False), forward_at=1.0) as relay:
        config = config_of(config_file, served, relay)
        assert main(["run", "--once", "--config", str(config)]) == 0
        assert ("mail1", "outbound.no_tls", "open") in alerts(config)
        relay.attack = (0.0, attacker_key)
        assert main(["run", "--once", "--config", str(config)]) == 0
    assert newest_client(config, "mail1")[0] == "no_tls"  # before: "ok", the alert resolved
    assert ("mail1", "outbound.no_tls", "open") in alerts(config)
    assert relay.sent == ["127.0.0.1", ATTACKER, "127.0.0.1"], relay.errors
    assert sql(config, "SELECT count(*) FROM outbox WHERE kind = 'resolved'") == [(0,)]
    severity, message = newest_findings(config, "mail1")["capture.token_reused"]
    assert severity == "warning" and "attacker.contoso.com" in message and ATTACKER in message


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("192.0.2.300", "'192.0.2.300' is not an IP address or network"),
        ("192.0.2.10/24", "did you mean 192.0.2.0/24"),
        ("mail1.contoso.com", "host names are not resolved"),
    ],
)
def test_relay_addresses_are_checked_at_load(
    config_file: Callable[..., Path], entry: str, says: str
) -> None:
    config = config_file(
        endpoint_toml("mail1", 25)
        + f'[endpoints.outbound]\nrelay_addresses = ["192.0.2.10", "{entry}"]\n',
        extra=f'\n[capture]\nprobe_domains = ["{PROBE_DOMAIN}"]\n',
    )
    with pytest.raises(ConfigError) as error:
        load(config)
    assert "relay_addresses" in str(error.value) and says in str(error.value)


def test_the_worse_delivery_never_drops_another_deliverys_finding(
    config_file: Callable[..., Path], intermediate: pki.Issued
) -> None:
    """Review of #35: an attacker's delivery without TLS is as bad as the relay's expiring
    client certificate (both critical) and wins the tie; the relay's ``cert.expiring`` must
    still be among the findings, or its alert would resolve because of a replay."""
    from datetime import UTC, datetime, timedelta

    from cryptography.hazmat.primitives.serialization import Encoding

    from checks.base import Direction, ProbeStatus
    from monitor.results import ProbeResult, ProbeTarget
    from tests.test_outbound import capture_toml, outbound_toml

    config = load(
        config_file(
            endpoint_toml("mail1", 25) + outbound_toml(2525), extra=capture_toml(free_port())
        )
    )
    now = datetime.now(UTC)
    leaf = pki.make_leaf(intermediate, ["relay.contoso.com"], not_before=now - timedelta(days=88))
    target = ProbeTarget(
        "mail1",
        "mail1.contoso.com",
        25,
        "127.0.0.1",
        "outbound",
        "probe.test",
        3.0,
        Direction.TO_EXO,
    )
    der = tuple(c.public_bytes(Encoding.DER) for c in (leaf.cert, intermediate.cert))
    relay = ProbeResult(target, now, ProbeStatus.OK, tls_version="TLSv1.3", chain_der=der)
    attacker = ProbeResult(target, now, ProbeStatus.NO_TLS)
    attacker.rivals = (relay,)
    record = Scanner(config).judge(now).judge(attacker, config.endpoints[0])
    found = {f.rule: f.severity.value for f in record.findings}
    assert record.result.status is ProbeStatus.NO_TLS  # the worse delivery is the verdict
    assert found.get("outbound.no_tls") == "critical", found
    assert found.get("cert.expiring") == "critical", found  # the relay's, kept
