"""The probe against real loopback servers: aiosmtpd, and scripted asyncio servers for the
dialogue and failure cases (multi-line and late greetings, refusals, stalls, floods, garbage)."""

from __future__ import annotations

import asyncio
import ssl
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest
from cryptography import x509

from checks.base import ProbeStatus
from checks.certinfo import fingerprint
from monitor.demo import pki
from monitor.demo.servers import server_context
from monitor.probe.bounded import probe_many
from monitor.probe.smtp import ProbeTarget, probe
from monitor.results import ProbeResult

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def target(port: int, mode: str = "starttls", timeout: float = 2.0) -> ProbeTarget:
    return ProbeTarget("t", "mail1.contoso.com", port, "127.0.0.1", mode, "probe.test", timeout)


@asynccontextmanager
async def scripted(handler: Handler) -> AsyncIterator[int]:
    """A raw TCP server on loopback running ``handler`` per connection; yields its port."""
    tasks: set[asyncio.Task[None]] = set()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with suppress(Exception):  # the peer may be gone already; that is fine here
                await writer.wait_closed()

    server = await asyncio.start_server(run, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def probe_starttls(context: ssl.SSLContext) -> ProbeResult:
    """Probe a scripted server that greets, offers STARTTLS and upgrades with ``context``."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mx.test\r\n")
        await ehlo_loop(reader, writer, context)

    async with scripted(handler) as port:
        return await probe(target(port))


async def ehlo_loop(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    tls: ssl.SSLContext | None,
    starttls_reply: bytes = b"220 2.0.0 Ready to start TLS\r\n",
    ehlo_reply: bytes = b"250-mx.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n",
) -> list[bytes]:
    """A minimal SMTP server loop after the greeting; returns the commands it received."""
    seen: list[bytes] = []
    while line := await reader.readline():
        seen.append(line)
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            writer.write(ehlo_reply)
        elif verb == b"STAR":
            writer.write(starttls_reply)
            await writer.drain()
            if starttls_reply.startswith(b"220") and tls is not None:
                await writer.start_tls(tls)
                ehlo_reply = b"250-mx.test\r\n250 PIPELINING\r\n"
        elif verb == b"QUIT":
            writer.write(b"221 bye\r\n")
            await writer.drain()
            break
        else:
            writer.write(b"502 unknown\r\n")
        await writer.drain()
    return seen


@pytest.fixture(scope="module")
def chain_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    root = pki.make_ca("Probe Root")
    sub = pki.make_ca("Probe Issuing CA", root)
    leaf = pki.make_leaf(sub, ["mail1.contoso.com"])
    key, chain = pki.write_chain(tmp_path_factory.mktemp("probe"), "leaf", leaf, sub)
    return key, chain, [fingerprint(leaf.cert), fingerprint(sub.cert)]


@pytest.fixture(scope="module")
def tls_context(chain_files: tuple[Path, Path, list[str]]) -> ssl.SSLContext:
    return server_context(chain_files[0], chain_files[1])


def prints(der: tuple[bytes, ...]) -> list[str]:
    return [fingerprint(x509.load_der_x509_certificate(d)) for d in der]


# -- aiosmtpd -------------------------------------------------------------------------------------


async def test_starttls_captures_chain_in_order(smtp_server, chain_files) -> None:  # type: ignore[no-untyped-def]
    key, chain, expected = chain_files
    server = smtp_server("starttls", key, chain)
    result = await probe(target(server.port))
    assert result.status is ProbeStatus.OK, result.error
    assert prints(result.chain_der) == expected
    assert result.tls_version in ("TLSv1.2", "TLSv1.3")
    assert result.cipher
    assert result.banner and result.banner.startswith("220 ")
    assert "STARTTLS" in result.ehlo
    assert result.starttls_reply and result.starttls_reply.startswith("220")
    assert {"connect", "greeting", "ehlo", "starttls", "ehlo_tls", "quit", "total"} <= set(
        result.timings
    )


async def test_implicit_tls(smtp_server, chain_files) -> None:  # type: ignore[no-untyped-def]
    key, chain, expected = chain_files
    server = smtp_server("tls", key, chain)
    result = await probe(target(server.port, mode="tls"))
    assert result.status is ProbeStatus.OK, result.error
    assert prints(result.chain_der) == expected
    assert result.starttls_reply is None and "handshake" in result.timings


async def test_starttls_not_offered(smtp_server) -> None:  # type: ignore[no-untyped-def]
    server = smtp_server("plain")
    result = await probe(target(server.port))
    assert result.status is ProbeStatus.STARTTLS_MISSING
    assert result.chain_der == () and "STARTTLS" not in result.ehlo


# -- scripted servers -----------------------------------------------------------------------------


async def test_multiline_greeting_and_starttls_on_last_ehlo_line(tls_context, chain_files) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220-mx.test ESMTP\r\n220-no UCE\r\n220 ready\r\n")
        await writer.drain()
        await ehlo_loop(reader, writer, tls_context)

    async with scripted(handler) as port:
        result = await probe(target(port))
    assert result.status is ProbeStatus.OK, result.error
    assert result.banner is not None and "no UCE" in result.banner and "ready" in result.banner
    assert prints(result.chain_der) == chain_files[2]


async def test_late_greeting_is_awaited_without_talking_first(tls_context) -> None:  # type: ignore[no-untyped-def]
    early: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Like Postfix postscreen: wait, and note anything the client says before the greeting.
        with suppress(TimeoutError):
            early.append(await asyncio.wait_for(reader.read(100), 0.8))
        writer.write(b"220 mx.test ESMTP late\r\n")
        await writer.drain()
        await ehlo_loop(reader, writer, tls_context)

    async with scripted(handler) as port:
        result = await probe(target(port, timeout=3))
    assert early == [] and result.status is ProbeStatus.OK, result.error
    assert result.timings["greeting"] >= 700


async def test_starttls_refused_with_454(tls_context) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mx.test\r\n")
        await ehlo_loop(
            reader,
            writer,
            tls_context,
            starttls_reply=b"454 4.7.0 TLS not available due to local problem\r\n",
        )

    async with scripted(handler) as port:
        result = await probe(target(port))
    assert result.status is ProbeStatus.STARTTLS_REFUSED
    assert result.failed_step == "starttls"
    assert result.error is not None and result.error.startswith("454 4.7.0 TLS not available")


async def test_handshake_failure_is_reported() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mx.test\r\n")
        await ehlo_loop(reader, writer, None)  # says 220 to STARTTLS, then speaks plain text
        writer.write(b"this is not a TLS record\r\n" * 10)

    async with scripted(handler) as port:
        result = await probe(target(port))
    assert result.status is ProbeStatus.HANDSHAKE_FAILED
    assert result.failed_step == "handshake" and result.error


async def test_handshake_alert_from_server() -> None:
    """The server offers TLS but has no usable certificate: the handshake fails with an alert."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # no certificate loaded

    result = await probe_starttls(context)
    assert result.status is ProbeStatus.HANDSHAKE_FAILED
    assert result.failed_step == "handshake" and result.error


@pytest.mark.parametrize("where", ["greeting", "ehlo", "handshake"])
async def test_stall_costs_one_timeout(where: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if where != "greeting":
            writer.write(b"220 mx.test\r\n")
            await writer.drain()
        if where == "handshake":
            await reader.readline()  # EHLO
            writer.write(b"250-mx.test\r\n250 STARTTLS\r\n")
            await reader.readline()  # STARTTLS
            writer.write(b"220 go ahead\r\n")
            await writer.drain()
        await asyncio.sleep(60)  # then never answer (the ClientHello, for "handshake")

    async with scripted(handler) as port:
        started = time.monotonic()
        result = await probe(target(port, timeout=0.5))
        elapsed = time.monotonic() - started
    assert result.status in (ProbeStatus.UNREACHABLE, ProbeStatus.HANDSHAKE_FAILED)
    assert result.failed_step == where
    assert result.error and "0.5s" in result.error
    assert elapsed < 2.0


async def test_flood_is_cut_off() -> None:
    sent = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        line = b"220-" + b"x" * 1000 + b"\r\n"
        while True:  # an endless multi-line greeting
            writer.write(line * 64)
            sent += len(line) * 64
            await writer.drain()

    async with scripted(handler) as port:
        started = time.monotonic()
        result = await probe(target(port, timeout=2))
        elapsed = time.monotonic() - started
    assert result.status is ProbeStatus.UNREACHABLE and result.failed_step == "greeting"
    assert result.error and "too long" in result.error
    assert elapsed < 2.0


async def test_garbage_greeting() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x00\xffHELLO I AM NOT SMTP\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async with scripted(handler) as port:
        result = await probe(target(port, timeout=1))
    assert result.status is ProbeStatus.UNREACHABLE
    assert result.failed_step == "greeting" and result.error


async def test_server_not_ready_554() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"554 5.7.1 go away\r\n")
        await writer.drain()
        await ehlo_loop(reader, writer, None)

    async with scripted(handler) as port:
        result = await probe(target(port))
    assert result.status is ProbeStatus.UNREACHABLE and result.failed_step == "greeting"
    assert result.error and "554" in result.error


async def test_server_closes_immediately() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with scripted(handler) as port:
        result = await probe(target(port))
    assert result.status is ProbeStatus.UNREACHABLE and result.failed_step == "greeting"


async def test_connection_refused() -> None:
    async with scripted(ehlo_loop) as port:  # learn a port, then close the server
        pass
    result = await probe(target(port))
    assert result.status is ProbeStatus.UNREACHABLE and result.failed_step == "connect"
    assert result.error == "Connection refused"


async def test_outdated_tls_version_is_observed(chain_files) -> None:  # type: ignore[no-untyped-def]
    context = server_context(chain_files[0], chain_files[1])
    with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated: that is the point here
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("ALL:@SECLEVEL=0")

    result = await probe_starttls(context)
    assert result.status is ProbeStatus.OK, result.error
    assert result.tls_version == "TLSv1.1"


async def test_bounded_concurrency(tls_context) -> None:  # type: ignore[no-untyped-def]
    active = peak = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            await asyncio.sleep(0.05)
            writer.write(b"220 mx.test\r\n")
            await ehlo_loop(reader, writer, tls_context)
        finally:
            active -= 1

    async with scripted(handler) as port:
        results = await probe_many([target(port)] * 12, concurrency=3)
    assert all(r.status is ProbeStatus.OK for r in results)
    assert peak == 3
