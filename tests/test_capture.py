"""The capture listener on loopback: it captures any client certificate exactly as presented,
is never a relay, and survives garbage, huge and slow clients and a burst of connections."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiosmtplib
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from monitor.capture.certs import listener_files
from monitor.capture.dialogue import Capture, Limits
from monitor.capture.listener import CaptureListener
from monitor.capture.options import ListenerSettings
from monitor.capture.tls import server_context
from monitor.capture.tokens import Kind, TokenKeys
from monitor.capture.waiters import Arrival
from monitor.demo import pki
from monitor.errors import ConfigError

DOMAIN = "probe.contoso.test"


def settings(tmp_path: Path, **overrides: object) -> ListenerSettings:
    cert, key = listener_files(None, None, tmp_path / "capture", "capture.test")
    values: dict[str, object] = {
        "addresses": (("127.0.0.1", 0),),
        "hostname": "capture.test",
        "domains": frozenset({DOMAIN}),
        "ctx": server_context(cert, key),
        "limits": Limits(timeout=2.0),
        "session_timeout": 10.0,
        "max_connections": 300,
        "max_per_peer": 300,
        "rate_per_peer": 1000,
        "keys": TokenKeys(b"k" * 32, timedelta(hours=1)),
    }
    values.update(overrides)
    return ListenerSettings(**values)  # type: ignore[arg-type]


def token(server: CaptureListener, endpoint: str = "mail1") -> str:
    """A valid token of one outbound check of ``endpoint``."""
    return server.settings.keys.issue(Kind.CHECK, endpoint, datetime.now(UTC))


class Arrivals(list[Capture]):
    """The captures of the arrivals no check waited for (their claims in ``claims``)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[Arrival] = []

    def __call__(self, arrival: Arrival) -> None:
        self.arrivals.append(arrival)
        self.append(arrival.capture)


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[tuple[CaptureListener, list[Capture]]]:
    passive = Arrivals()
    server = CaptureListener(settings(tmp_path), passive)
    await server.start()
    yield server, passive
    await server.close()


def client_context(key: Path | None = None, chain: Path | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if key and chain:
        context.load_cert_chain(chain, key)
    return context


async def send(
    port: int,
    rcpt: str,
    context: ssl.SSLContext | None,
    body: str = "Subject: t\r\n\r\nbody\r\n",
    source: str = "127.0.0.1",
    ehlo: str = "relay.contoso.test",
) -> tuple[dict[str, object], str]:
    smtp = aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=port,
        start_tls=False,
        timeout=5,
        local_hostname=ehlo,
        source_address=(source, 0),
    )
    await smtp.connect()
    await smtp.ehlo()
    if context is not None:
        await smtp.starttls(tls_context=context)
    try:
        return await smtp.sendmail("sender@contoso.test", [rcpt], body)
    finally:
        smtp.close()


async def test_captures_the_client_chain_as_presented(
    listener: tuple[CaptureListener, list[Capture]],
    write_chain,  # type: ignore[no-untyped-def]
    good_leaf: pki.Issued,
    intermediate: pki.Issued,
) -> None:
    server, _ = listener
    key, chain = write_chain(good_leaf, intermediate)
    mine = token(server)
    arrival = server.expect(mine)
    await send(server.port(), f"rc-{mine}@{DOMAIN}", client_context(key, chain))
    capture = await asyncio.wait_for(arrival, 5)
    assert capture.tls and capture.tls_version in ("TLSv1.2", "TLSv1.3")
    certs = [x509.load_der_x509_certificate(d) for d in capture.chain_der]
    assert certs == [good_leaf.cert, intermediate.cert]  # leaf first, exactly as sent
    assert capture.ehlo == "relay.contoso.test"
    assert capture.mail_from == "sender@contoso.test"


async def test_accepts_expired_self_signed_and_leaf_only_clients(
    listener: tuple[CaptureListener, list[Capture]], tmp_path: Path
) -> None:
    server, passive = listener
    now = datetime.now(UTC)
    expired = pki.make_leaf(
        None,
        ["self.contoso.com"],
        not_before=now - timedelta(days=30),
        not_after=now - timedelta(days=1),
    )
    key, chain = pki.write_chain(tmp_path / "c", "expired", expired)
    await send(server.port(), f"anyone@{DOMAIN}", client_context(key, chain))
    await send(server.port(), f"anyone@{DOMAIN}", client_context())  # TLS, no certificate
    await send(server.port(), f"anyone@{DOMAIN}", None)  # plain text
    assert [len(c.chain_der) for c in passive] == [1, 0, 0]
    assert [c.tls for c in passive] == [True, True, False]
    assert x509.load_der_x509_certificate(passive[0].chain_der[0]) == expired.cert


async def test_is_never_a_relay(listener: tuple[CaptureListener, list[Capture]]) -> None:
    server, passive = listener
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await send(server.port(), "victim@example.org", client_context())
    assert [r.code for r in refused.value.recipients] == [550]
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await send(server.port(), f"x@{DOMAIN}.evil.test", None)
    assert passive == []


async def _dialogue(port: int, lines: list[bytes], read_for: float = 1.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for line in lines:
        writer.write(line)
    await writer.drain()
    data = b""
    try:
        async with asyncio.timeout(read_for):
            while chunk := await reader.read(65536):
                data += chunk
    except TimeoutError:
        pass
    writer.close()
    return data


async def test_plaintext_injected_before_tls_is_discarded(
    listener: tuple[CaptureListener, list[Capture]],
) -> None:
    server, _ = listener
    # RFC 3207 / CVE-2011-0411: commands pipelined after STARTTLS must not run.
    data = await _dialogue(server.port(), [b"EHLO x\r\nSTARTTLS\r\nMAIL FROM:<a@b>\r\n"])
    assert b"220 2.0.0 Ready to start TLS" in data
    assert b"250 2.1.0" not in data


async def test_survives_garbage_huge_and_slow_clients(
    listener: tuple[CaptureListener, list[Capture]],
) -> None:
    server, passive = listener
    port = server.port()
    garbage = await _dialogue(port, [bytes(range(256)) * 64 + b"\r\n", b"\x16\x03\x01" * 1000])
    assert garbage.startswith(b"220 ")  # greeted, then "500 line too long" or 502s, no crash
    long_line = await _dialogue(port, [b"EHLO " + b"a" * 100_000])
    assert b"500 5.5.2 Line too long" in long_line
    tls_garbage = await _dialogue(port, [b"EHLO x\r\nSTARTTLS\r\n", b"\x16\x03\x01\x00\x05hello"])
    assert b"220 2.0.0 Ready" in tls_garbage

    # A slow client that says nothing is dropped after the read timeout (2 s here).
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()
    async with asyncio.timeout(5):
        assert await reader.read() == b""  # closed by the listener
    writer.close()

    # 10 MB of DATA: read and discarded, refused as too big, envelope recorded, no body kept.
    body = "Subject: big\r\n\r\n" + ("x" * 998 + "\r\n") * 10_500
    with pytest.raises(aiosmtplib.SMTPDataError) as big:
        await send(port, f"big@{DOMAIN}", client_context(), body)
    assert big.value.code == 552
    assert passive[-1].size > 10_000_000
    assert "xxxx" not in repr(passive[-1])  # only the size of the body was kept

    # Still serving.
    mine = token(server)
    arrival = server.expect(mine)
    await send(port, f"rc-{mine}@{DOMAIN}", client_context())
    assert (await asyncio.wait_for(arrival, 5)).tls


async def test_200_concurrent_connections_then_still_serving(tmp_path: Path) -> None:
    server = CaptureListener(settings(tmp_path, max_connections=100, max_per_peer=100))
    await server.start()
    try:
        port = server.port()
        opened = await asyncio.gather(
            *(asyncio.open_connection("127.0.0.1", port) for _ in range(200))
        )
        greetings = await asyncio.gather(
            *(asyncio.wait_for(reader.readline(), 5) for reader, _ in opened)
        )
        accepted = sum(g.startswith(b"220 ") for g in greetings)
        refused = sum(g.startswith(b"421 ") for g in greetings)
        assert accepted == 100 and refused == 100  # the limit holds, nobody hangs
        for _, writer in opened:
            writer.close()
        await asyncio.sleep(0.2)
        mine = token(server)
        arrival = server.expect(mine)
        await send(port, f"rc-{mine}@{DOMAIN}", client_context())
        assert (await asyncio.wait_for(arrival, 5)).tls
    finally:
        await server.close()


async def test_probes_in_flight_do_not_mix(
    listener: tuple[CaptureListener, list[Capture]],
    write_chain,  # type: ignore[no-untyped-def]
    intermediate: pki.Issued,
) -> None:
    server, passive = listener
    tokens = [token(server, f"mail{i}") for i in range(1, 9)]
    arrivals = [server.expect(t) for t in tokens]
    leaves = [pki.make_leaf(intermediate, [f"host{i}.contoso.com"]) for i in range(8)]
    contexts = [client_context(*write_chain(leaf, intermediate)) for leaf in leaves]
    await asyncio.gather(
        *(
            send(server.port(), f"rc-{t}@{DOMAIN}", c)
            for t, c in reversed(list(zip(tokens, contexts, strict=True)))
        )
    )
    for arrival, leaf in zip(arrivals, leaves, strict=True):
        capture = await asyncio.wait_for(arrival, 5)
        assert x509.load_der_x509_certificate(capture.chain_der[0]) == leaf.cert
    assert passive == []


async def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    first = CaptureListener(settings(tmp_path))
    await first.start()
    try:
        taken = first.port()
        second = CaptureListener(settings(tmp_path, addresses=(("127.0.0.1", taken),)))
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{taken}"):
            await second.start()
    finally:
        await first.close()


def test_generated_listener_key_is_private_and_kept(tmp_path: Path) -> None:
    cert, key = listener_files(None, None, tmp_path / "state", "capture.test")
    assert key.stat().st_mode & 0o777 == 0o600
    again = listener_files(None, None, tmp_path / "state", "capture.test")
    assert again == (cert, key) and cert.read_bytes() == again[0].read_bytes()


def test_tokens_verify_only_their_own(tmp_path: Path) -> None:
    from monitor.capture.tokens import Claim, EndpointIds, Rejected, load_secret

    keys = TokenKeys(load_secret(None, tmp_path / "state"), timedelta(hours=1))
    now = datetime.now(UTC)
    token = keys.issue(Kind.CHECK, "mail1", now)
    claim = keys.verify(token, now)
    assert isinstance(claim, Claim) and claim.kind is Kind.CHECK
    assert EndpointIds(keys, ["mail2", "mail1"]).name(claim.endpoint_id) == "mail1"
    assert isinstance(keys.verify(token.upper(), now), Claim)  # an MTA that folds case
    tampered = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert "does not verify" in keys.verify(tampered, now).reason  # type: ignore[union-attr]
    other = TokenKeys(b"x" * 32, timedelta(hours=1))
    assert isinstance(other.verify(token, now), Rejected)
    later = now + timedelta(hours=2)
    assert "expired" in keys.verify(token, later).reason  # type: ignore[union-attr]
    early = now - timedelta(hours=1)
    assert "future" in keys.verify(token, early).reason  # type: ignore[union-attr]
    assert keys.verify("0123456789abcdef", now) == Rejected(
        "0123456789abcdef", "not a relaycert token"
    )


def test_the_token_secret_is_created_once_and_private(tmp_path: Path) -> None:
    from monitor.capture.tokens import load_secret

    first = load_secret(None, tmp_path / "state")
    assert (tmp_path / "state" / "token-secret").stat().st_mode & 0o777 == 0o600
    assert load_secret(None, tmp_path / "state") == first and len(first) == 64  # hex
    copied = tmp_path / "copied"
    copied.write_bytes((tmp_path / "state" / "token-secret").read_bytes())
    copied.chmod(0o600)
    assert load_secret(copied, tmp_path / "other") == first  # one secret on every instance
    short = tmp_path / "short"
    short.write_bytes(b"tiny")
    short.chmod(0o600)
    with pytest.raises(ConfigError, match=r"token_secret_file: .* holds 4 bytes"):
        load_secret(short, tmp_path / "state")
    with pytest.raises(ConfigError, match="cannot read"):
        load_secret(tmp_path / "missing", tmp_path / "state")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_token_secret_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    """Like ssh with a private key: a token secret that group or others can read (whoever
    reads it can forge probe tokens) is refused, naming the file, its mode and the fix."""
    from monitor.capture.tokens import load_secret

    secret = tmp_path / "token-secret"
    secret.write_bytes(b"ab" * 32)
    secret.chmod(mode)
    with pytest.raises(ConfigError) as refused:
        load_secret(secret, tmp_path / "state")
    message = str(refused.value)
    assert f"[capture] token_secret_file: {secret} has mode {mode:04o}" in message
    assert f"chmod 600 {secret}" in message
    generated = tmp_path / "state" / "token-secret"
    load_secret(None, tmp_path / "state")
    generated.chmod(mode)  # loosened by hand afterwards: refused the same way
    with pytest.raises(ConfigError, match=f"chmod 600 {generated}"):
        load_secret(None, tmp_path / "state")
    secret.chmod(0o400)  # read-only for its owner is fine
    assert load_secret(secret, tmp_path / "state") == b"ab" * 32


async def test_every_delivery_of_a_token_is_kept(
    listener: tuple[CaptureListener, list[Capture]],
    write_chain,  # type: ignore[no-untyped-def]
    good_leaf: pki.Issued,
    intermediate: pki.Issued,
) -> None:
    """A token delivered twice (a leaked one replayed, a race) is never refused as "already
    used": the check sees both deliveries, each with its peer, EHLO name, TLS and chain."""
    server, passive = listener
    mine = token(server)
    arrival = server.expect(mine)
    await send(server.port(), f"rc-{mine}@{DOMAIN}", None, source="127.0.0.2", ehlo="x.test")
    await send(server.port(), f"rc-{mine}@{DOMAIN}", client_context(*write_chain(good_leaf)))
    first = await asyncio.wait_for(arrival, 5)
    assert (first.peer, first.ehlo, first.tls) == ("127.0.0.2", "x.test", False)
    deliveries = server.deliveries(mine)
    assert [(d.capture.peer, d.capture.tls, len(d.capture.chain_der)) for d in deliveries] == [
        ("127.0.0.2", False, 0),
        ("127.0.0.1", True, 1),
    ]
    assert all(d.counted for d in deliveries)
    assert passive == []  # nothing dropped as a replay
    server.release(mine)  # the check is done: a later delivery is kept for it, not refused...
    await send(server.port(), f"rc-{mine}@{DOMAIN}", None)
    assert len(server.deliveries(mine)) == 3
    (again,) = passive.arrivals  # type: ignore[attr-defined]
    assert again.claim.token == mine and again.reason is None and again.known  # ...and handed on


async def test_a_token_from_outside_relay_addresses_does_not_complete_its_check(
    listener: tuple[CaptureListener, list[Capture]],
    write_chain,  # type: ignore[no-untyped-def]
    good_leaf: pki.Issued,
    intermediate: pki.Issued,
) -> None:
    """With the endpoint's ``relay_addresses``, a delivery from any other peer (a good
    certificate too) is kept but unattributed: the check waits on for its relay's."""
    from monitor.capture.evidence import RelayPeers

    server, passive = listener
    mine = token(server)
    arrival = server.expect(mine, RelayPeers.of(("127.0.0.1", "::1")))
    good = client_context(*write_chain(good_leaf, intermediate))
    await send(server.port(), f"rc-{mine}@{DOMAIN}", good, source="127.0.0.2", ehlo="x.test")
    assert not arrival.done()
    (stranger,) = passive.arrivals  # type: ignore[attr-defined]
    assert stranger.claim.token == mine and "relay_addresses" in stranger.reason
    assert stranger.capture.peer == "127.0.0.2"
    await send(server.port(), f"rc-{mine}@{DOMAIN}", None)
    assert (await asyncio.wait_for(arrival, 5)).peer == "127.0.0.1"
    assert [d.counted for d in server.deliveries(mine)] == [False, True]
    assert not server.is_known("127.0.0.2")  # an unlisted peer gets no reserved connections


async def test_idle_peers_are_cut_sooner_under_stress_known_ones_are_not(tmp_path: Path) -> None:
    server = CaptureListener(
        settings(
            tmp_path,
            limits=Limits(timeout=5.0),
            max_connections=4,
            reserved=1,
            stress_timeout=0.5,
        ),
        known=["127.0.0.1"],
    )
    await server.start()
    try:
        port = server.port()
        known = await asyncio.open_connection("127.0.0.1", port)
        strangers = [
            await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
            for _ in range(3)
        ]
        greetings = [await asyncio.wait_for(r.readline(), 2) for r, _ in strangers]
        # Three of four slots: the fourth stranger was refused (one is reserved).
        assert [g[:3] for g in greetings] == [b"220", b"220", b"421"]
        started = asyncio.get_running_loop().time()
        async with asyncio.timeout(3):
            for reader, _ in strangers[:2]:
                assert await reader.read() == b""  # cut after the stress timeout
        assert asyncio.get_running_loop().time() - started < 2.5
        await asyncio.wait_for(known[0].readline(), 2)  # the known peer's greeting
        with pytest.raises(TimeoutError):  # ...and its session is still open
            await asyncio.wait_for(known[0].read(), 1.0)
        for _, writer in [known, *strangers]:
            writer.close()
    finally:
        await server.close()


async def test_a_client_certificate_with_1000_names_is_captured(
    listener: tuple[CaptureListener, list[Capture]], tmp_path: Path
) -> None:
    """A 67 KB client certificate (1000 SANs) is captured as sent, not refused with a TLS
    internal error that nothing logs (#25)."""
    server, passive = listener
    names = [
        f"relay-{i:04d}.outbound-smtp.branch-office-{i:04d}.emea-region.contoso.com"
        for i in range(1000)
    ]
    big = pki.make_leaf(None, names)
    key, chain = pki.write_chain(tmp_path / "c", "big", big)
    assert len(big.cert.public_bytes(Encoding.DER)) > 65_000
    await send(server.port(), f"anyone@{DOMAIN}", client_context(key, chain))
    assert [len(c.chain_der) for c in passive] == [1]
    assert x509.load_der_x509_certificate(passive[0].chain_der[0]) == big.cert


async def test_a_failed_client_handshake_is_logged_with_its_reason(
    listener: tuple[CaptureListener, list[Capture]], caplog: pytest.LogCaptureFixture
) -> None:
    """A client whose TLS handshake fails leaves a log line that says who and why."""
    server, passive = listener
    with caplog.at_level("INFO", logger="relaycert.capture"):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port())
        writer.write(b"EHLO x\r\nSTARTTLS\r\n")
        reply = b""
        while b"220 2.0.0" not in reply:
            reply += await asyncio.wait_for(reader.read(4096), 5)
        writer.write(b"\x16\x03\x01\x00\x05hello")  # a ClientHello that is not one
        await writer.drain()
        for _ in range(100):
            if any("capture.tls_failed" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.05)
    writer.close()
    assert passive == []
    failed = [r.fields for r in caplog.records if r.getMessage() == "capture.tls_failed"]  # type: ignore[attr-defined]
    assert len(failed) == 1 and failed[0]["peer"] == "127.0.0.1"
    assert failed[0]["reason"].startswith("TLS handshake failed: ")


def test_an_ipv6_64_counts_as_one_peer() -> None:
    """The per-peer limits count an IPv6 /64 as one peer (a host is given a whole /64), an
    IPv4 address (also IPv4-mapped) as itself."""
    from monitor.capture.peers import peer_group

    assert (
        peer_group("2001:db8:1:2::1") == peer_group("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    )
    assert peer_group("2001:db8:1:3::1") != peer_group("2001:db8:1:2::1")
    assert peer_group("::ffff:192.0.2.7") == peer_group("192.0.2.7") == "192.0.2.7"
    assert peer_group("not an address") == "not an address"


async def test_replays_are_bounded_and_still_seen(
    listener: tuple[CaptureListener, list[Capture]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token replayed again and again is kept up to a bound; the rest are still handed on
    as unattributed captures (shown, counted), never silently dropped."""
    from monitor.capture import evidence

    monkeypatch.setattr(evidence, "MAX_DELIVERIES", 2)
    server, passive = listener
    mine = token(server)
    arrival = server.expect(mine)
    for _ in range(3):
        await send(server.port(), f"rc-{mine}@{DOMAIN}", None)
    await asyncio.wait_for(arrival, 5)
    assert len(server.deliveries(mine)) == 2
    (over,) = passive.arrivals  # type: ignore[attr-defined]
    assert over.reason is not None and "more than 2 times" in over.reason
    assert server.unattributed == 1


async def test_the_evidence_of_all_tokens_is_bounded(
    listener: tuple[CaptureListener, list[Capture]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replays of many leaked tokens cannot fill memory: the oldest released check's deliveries
    make room (its result is stored, and a later delivery is judged against the store)."""
    from monitor.capture import waiters

    monkeypatch.setattr(waiters, "DELIVERIES_KEPT", 2)
    server, passive = listener
    old, new = token(server), token(server, "mail2")
    server.expect(old)
    for _ in range(2):
        await send(server.port(), f"rc-{old}@{DOMAIN}", None)
    server.release(old)
    arrival = server.expect(new)
    await send(server.port(), f"rc-{new}@{DOMAIN}", None)
    await asyncio.wait_for(arrival, 5)
    assert server.deliveries(old) == () and len(server.deliveries(new)) == 1
    assert passive == []
