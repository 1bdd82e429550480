"""The daemon's HTTP listener as a client on loopback sees it (#35): security headers on every
answer, aiohttp's own error pages included; the Host check against DNS rebinding; a slow client
closed in bounded time; 200 concurrent clients all answered with no traceback logged; the
connection cap answering 503 instead of dropping."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from monitor.config.loader import Config, load
from monitor.demo.servers import free_port
from monitor.service.gate import Limits
from monitor.service.http_hosts import host_allowed
from monitor.service.listener import MetricsServer
from monitor.store.engine import Store
from tests.conftest import endpoint_toml

STRICT = "default-src 'none'; frame-ancestors 'none'"
ASK = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def secured(headers: httpx.Headers | dict[str, str], csp: str = STRICT) -> None:
    """The security headers every answer carries."""
    lower = {k.lower(): v for k, v in headers.items()}
    assert lower["x-content-type-options"] == "nosniff", headers
    assert lower["cache-control"] == "no-store", headers
    assert lower["referrer-policy"] == "no-referrer", headers
    assert lower["x-frame-options"] == "DENY", headers
    assert lower["content-security-policy"] == csp, headers


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    yield opened
    opened.close()


@pytest.fixture
def config(config_file: Callable[..., Path]) -> Config:
    extra = '[daemon]\nstatus_page = "off"\nhttp_hosts = ["Relaycert.Example.NET."]\n'
    return load(config_file(endpoint_toml("gone", free_port()), extra=extra))


async def serving(
    store: Store,
    config: Config | None = None,
    limits: Limits = Limits(),  # noqa: B008
    running: Callable[[], bool] = lambda: True,
) -> MetricsServer:
    settings = (lambda: config) if config else None
    server = MetricsServer(store, lambda: None, running, settings, limits=limits)
    await server.start("127.0.0.1", 0)
    return server


async def raw(port: int, data: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as it is; the status, headers and body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        answer = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), headers, body


async def test_every_answer_carries_the_security_headers(store: Store) -> None:
    server = await serving(store)
    url = f"http://127.0.0.1:{server.port()}"
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            metrics = await client.get(f"{url}/metrics")
            assert metrics.status_code == 200 and "relaycert_" in metrics.text
            assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
            secured(metrics.headers)
            health = await client.get(f"{url}/healthz")
            assert (health.status_code, health.text) == (200, "ok\n")
            secured(health.headers)
            head = await client.head(f"{url}/healthz")
            assert head.status_code == 200 and head.content == b""
            secured(head.headers)
            forbidden = await client.get(f"{url}/")  # no configuration: the page is off
            assert forbidden.status_code == 403 and "status_page" in forbidden.text
            secured(forbidden.headers)
            missing = await client.get(f"{url}/nothing-here")
            assert missing.status_code == 404 and "/metrics" in missing.text
            secured(missing.headers)
            for method in ("POST", "PUT", "DELETE", "OPTIONS"):
                refused = await client.request(method, f"{url}/metrics", content=b"x")
                assert refused.status_code == 405, method
                assert set(refused.headers["allow"].split(",")) == {"GET", "HEAD"}
                secured(refused.headers)
            large = await client.post(f"{url}/metrics", content=b"x" * 100_000)
            assert large.status_code == 413
            secured(large.headers)
        # aiohttp's own answers to what is not HTTP, from its parser, not from a route
        garbage = b"GET /metrics HTTP/1.1 extra\r\nHost: 127.0.0.1\r\n\r\n"
        status, headers, _ = await raw(server.port(), garbage)
        assert status == 400
        secured(headers)
        long = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
        status, headers, _ = await raw(server.port(), long)
        assert status in (400, 431)
        secured(headers)
    finally:
        await server.close()


async def test_a_defect_is_a_500_with_the_headers_and_a_store_failure_a_503(
    store: Store, tmp_path: Path
) -> None:
    def defect() -> bool:
        raise RuntimeError("a bug")

    server = await serving(store, running=defect)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            broken = await client.get(f"http://127.0.0.1:{server.port()}/healthz")
            assert broken.status_code == 500 and "a bug" not in broken.text
            secured(broken.headers)
    finally:
        await server.close()
    server = await serving(store)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            (tmp_path / "store.db").unlink()
            gone = await client.get(f"http://127.0.0.1:{server.port()}/metrics")
            assert gone.status_code == 503 and "removed" in gone.text, gone.text
            secured(gone.headers)
    finally:
        await server.close()


async def test_the_status_page_keeps_its_own_policy(
    store: Store, config_file: Callable[..., Path]
) -> None:
    from monitor.service import statuspage

    config = load(config_file(endpoint_toml("gone", free_port())))  # status_page "loopback"
    server = await serving(store, config)
    url = f"http://127.0.0.1:{server.port()}"
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            page = await client.get(f"{url}/")
            assert page.status_code == 200, page.text
            secured(page.headers, statuspage.CSP)
            css = await client.get(f"{url}/status.css")
            assert css.headers["content-type"].startswith("text/css")
            secured(css.headers, statuspage.CSP)
            report = await client.get(f"{url}/report")  # none archived yet
            assert report.status_code == 404 and "[reports]" in report.text
            secured(report.headers)
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.0.0.1:9464", True),
        ("127.3.2.1:80", True),
        ("[::1]:9464", True),
        ("[::1]", True),
        ("localhost:9464", True),
        ("LOCALHOST.", True),
        ("10.0.0.5:9101", True),  # a Prometheus scraping the host's own address
        ("relaycert.example.net", True),  # configured
        ("relaycert.example.net.:443", True),
        ("evil.example", False),  # a rebinding name
        ("evil.example:9464", False),
        ("127.0.0.1.nip.io", False),
        ("localhost.evil.example", False),
        ("", False),
        (None, False),
        ("127.0.0.1:abc", False),
        ("::1", False),  # an IPv6 literal goes in brackets
        ("[::1]x", False),
    ],
)
def test_which_host_names_the_listener(host: str | None, allowed: bool) -> None:
    assert host_allowed(host, {"relaycert.example.net"}) is allowed


async def test_a_rebinding_host_is_refused(store: Store) -> None:
    server = await serving(store)
    port = server.port()
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            for host in ("evil.example", f"evil.example:{port}", "relaycert.example.net"):
                for path in ("/metrics", "/healthz", "/", "/report", "/nothing-here"):
                    refused = await client.get(f"{url}{path}", headers={"Host": host})
                    assert refused.status_code == 421, (host, path)
                    assert "[daemon] http_hosts" in refused.text
                    assert "relaycert_" not in refused.text
                    secured(refused.headers)
            for host in (f"127.0.0.1:{port}", f"localhost:{port}", "[::1]", "10.0.0.5:9101"):
                answered = await client.get(f"{url}/metrics", headers={"Host": host})
                assert answered.status_code == 200, host
        status, headers, body = await raw(
            port, b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n"
        )
        assert status == 400 and b"Host" in body  # HTTP/1.1 without Host: aiohttp's parser
        secured(headers)
        status, headers, body = await raw(port, b"GET /healthz HTTP/1.0\r\n\r\n")
        assert (status, body) == (200, b"ok\n")  # HTTP/1.0 without Host: no browser sends it
        secured(headers)
    finally:
        await server.close()


async def test_a_name_in_http_hosts_is_answered(store: Store, config: Config) -> None:
    server = await serving(store, config)
    url = f"http://127.0.0.1:{server.port()}/healthz"
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            for host in ("relaycert.example.net", "RELAYCERT.example.net:443"):
                assert (await client.get(url, headers={"Host": host})).status_code == 200
            other = await client.get(url, headers={"Host": "relaycert.example.org"})
            assert other.status_code == 421
    finally:
        await server.close()


async def test_a_slow_client_is_closed_in_bounded_time(store: Store) -> None:
    server = await serving(store, limits=Limits(request_timeout=0.5))
    port = server.port()
    try:
        started = time.monotonic()
        silent = await asyncio.open_connection("127.0.0.1", port)
        half = await asyncio.open_connection("127.0.0.1", port)
        half[1].write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        trickle = await asyncio.open_connection("127.0.0.1", port)

        async def dribble() -> None:
            with contextlib.suppress(ConnectionError):
                for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100:
                    trickle[1].write(bytes([byte]))
                    await trickle[1].drain()
                    await asyncio.sleep(0.05)

        dribbling = asyncio.create_task(dribble())
        for reader, _ in (silent, half, trickle):
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing answered
        assert time.monotonic() - started < 2
        dribbling.cancel()
        await asyncio.gather(dribbling, return_exceptions=True)
        for _, writer in (silent, half, trickle):
            writer.close()
        # A kept connection idle past the timeout is closed too; a new one is answered.
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
            await asyncio.sleep(1.0)
            assert (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
    finally:
        await server.close()


async def test_200_concurrent_clients_are_all_answered(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """The audit's case: 200 clients at once, each several requests one after the other, on a
    new connection each time (as the old listener closed every one) and on kept connections."""
    caplog.set_level(logging.WARNING)
    server = await serving(store)
    port = server.port()
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"

    async def fresh_connections() -> list[int]:
        return [(await raw(port, request.encode(), 30))[0] for _ in range(5)]

    async def kept_connection() -> list[int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        statuses = []
        try:
            for _ in range(5):
                writer.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
                head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)).decode()
                length = int(head.lower().split("content-length: ", 1)[1].split("\r\n", 1)[0])
                await reader.readexactly(length)
                statuses.append(int(head.split(" ", 2)[1]))
        finally:
            writer.close()
        return statuses

    try:
        fresh = await asyncio.gather(*(fresh_connections() for _ in range(200)))
        assert [s for statuses in fresh for s in statuses] == [200] * 1000
        kept = await asyncio.gather(*(kept_connection() for _ in range(200)))
        assert [s for statuses in kept for s in statuses] == [200] * 1000
    finally:
        await server.close()
    logged = [r for r in caplog.records if r.exc_info or "Unhandled exception" in r.getMessage()]
    assert not logged, [r.getMessage() for r in logged]


async def test_the_connection_cap_answers_instead_of_dropping(store: Store) -> None:
    """At the cap, the longest idle connection is answered 503 with Retry-After and closed, so
    a newcomer is served; when every connection is busy, the newcomer gets that 503."""
    gate = threading.Event()
    server = await serving(store, limits=Limits(connections=4), running=lambda: gate.wait(10))
    port = server.port()
    try:
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
        idle[0][1].write(b"GET /healthz HTTP/1.1\r\n")  # half a request: still idle
        await asyncio.sleep(0.1)
        gate.set()
        status, _, _ = await raw(port, ASK)
        assert status == 200
        evicted = await asyncio.wait_for(idle[0][0].read(), 5)
        assert evicted.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1\r\n" in evicted
        secured(dict(x.split(": ", 1) for x in evicted.decode().split("\r\n")[1:] if ": " in x))
        for _, writer in idle:
            writer.close()
        await asyncio.sleep(0.1)

        gate.clear()
        busy = [asyncio.create_task(raw(port, ASK)) for _ in range(4)]
        await asyncio.sleep(0.3)  # all four asked, all four waiting for the store
        status, headers, _ = await raw(port, ASK)
        assert status == 503 and headers["Retry-After"] == "1"
        gate.set()
        assert [s for s, _, _ in await asyncio.gather(*busy)] == [200] * 4
    finally:
        gate.set()
        await server.close()


def test_http_hosts_takes_names_only(config_file: Callable[..., Path], config: Config) -> None:
    from monitor.errors import ConfigError

    assert config.daemon.http_hosts == ("relaycert.example.net",)  # as Host is compared
    for bad in ("https://relaycert.example.net", "relaycert.example.net:443", "a b"):
        path = config_file(
            endpoint_toml("gone", free_port()), extra=f'[daemon]\nhttp_hosts = ["{bad}"]\n'
        )
        with pytest.raises(ConfigError, match="http_hosts"):
            load(path)


async def test_a_client_that_stops_reading_its_answer_is_closed_in_bounded_time() -> None:
    """Review of #35: a client that asks for a large answer and never reads it held its slot
    for good (no write timeout); after ``answer_timeout`` it is closed, and counted."""
    import socket

    from aiohttp import web

    from monitor.service import httpd

    limits = Limits(answer_timeout=0.5)
    app = httpd.application(lambda: (), limits)

    async def big(_: web.Request) -> web.Response:
        return web.Response(body=b"x" * (64 << 20))

    async def small(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app.router.add_get("/big", big)
    app.router.add_get("/small", small)
    listener = httpd.Listener(app, limits)
    await listener.start("127.0.0.1", 0)
    port = listener.port()
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        stuck.connect(("127.0.0.1", port))
        stuck.sendall(b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # and never reads
        for _ in range(100):  # 5 s at most
            if listener.gate.abandoned:
                break
            await asyncio.sleep(0.05)
        assert listener.gate.abandoned == 1 and not listener.gate.open
        async with httpx.AsyncClient(timeout=5) as client:  # others are answered as before
            answer = await client.get(f"http://127.0.0.1:{port}/small")
            assert answer.status_code == 200 and answer.text == "ok\n"
    finally:
        stuck.close()
        await listener.close()
