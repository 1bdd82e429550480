"""Shared fixtures: a test PKI, loopback SMTP servers, configuration files, store URLs."""

from __future__ import annotations

import email
import email.policy
import os
import textwrap
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import create_engine, text

from monitor.demo import pki
from monitor.demo.pebble import PEBBLE, Pebble
from monitor.demo.servers import LoopbackSMTP, free_port, server_context

PG_ADMIN_URL = os.environ.get(
    "RELAYCERT_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _loopback(address: object) -> bool:
    import ipaddress

    if not isinstance(address, tuple) or not address:
        return True  # a Unix socket, or something this guard does not know
    try:
        ip = ipaddress.ip_address(str(address[0]).split("%", 1)[0])
    except ValueError:
        return False  # a host name: a test must not resolve and reach one
    mapped = getattr(ip, "ipv4_mapped", None)
    ip = mapped or ip
    return ip.is_loopback or ip.is_unspecified


@pytest.fixture(autouse=True)
def fresh_logging() -> Iterator[None]:
    """Each test starts with relaycert's loggers as a fresh process has them: a command or a
    daemon run earlier in the same process (logs.setup) must not keep its handlers, level or
    propagation, which would hide later records from ``caplog``."""
    import logging

    yield
    for name in ("relaycert", "apscheduler", "httpx", "httpcore", "aiosmtplib", "asyncio"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


@pytest.fixture(scope="session", autouse=True)
def only_loopback() -> Iterator[None]:
    """Network traffic in tests goes only to 127.0.0.0/8 or ::1: a connection or datagram to
    any other address fails the test that made it, instead of leaving the machine (a TLSA
    lookup once reached the system resolver this way)."""
    import socket

    originals = {name: getattr(socket.socket, name) for name in ("connect", "connect_ex", "sendto")}

    def guarded(name: str) -> Callable[..., Any]:
        original = originals[name]

        def method(self: socket.socket, *args: Any) -> Any:
            address = args[-1]
            if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address):
                raise OSError(f"a test tried to reach {address!r}: only loopback is allowed")
            return original(self, *args)

        return method

    for name in originals:
        setattr(socket.socket, name, guarded(name))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(socket.socket, name, original)


@pytest.fixture(scope="session")
def root_ca() -> pki.Issued:
    return pki.make_ca("Test Root CA")


@pytest.fixture(scope="session")
def intermediate(root_ca: pki.Issued) -> pki.Issued:
    return pki.make_ca("Test Issuing CA", root_ca)


@pytest.fixture(scope="session")
def good_leaf(intermediate: pki.Issued) -> pki.Issued:
    return pki.make_leaf(intermediate, ["mail1.contoso.com", "mail.contoso.com"])


@pytest.fixture
def write_chain(tmp_path: Path) -> Callable[..., tuple[Path, Path]]:
    counter = iter(range(1000))

    def write(leaf: pki.Issued, *chain: pki.Issued) -> tuple[Path, Path]:
        return pki.write_chain(tmp_path / "certs", f"c{next(counter)}", leaf, *chain)

    return write


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., LoopbackSMTP]]:
    """Start aiosmtpd servers on loopback; all are stopped at the end of the test."""
    started: list[LoopbackSMTP] = []

    def start(mode: str, key: Path | None = None, chain: Path | None = None) -> LoopbackSMTP:
        server = LoopbackSMTP(mode, key, chain).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def config_file(tmp_path: Path, root_ca: pki.Issued) -> Callable[..., Path]:
    """Write a configuration with the test root trusted and the given endpoints TOML."""
    (tmp_path / "root.pem").write_bytes(root_ca.cert_pem())

    def write(endpoints: str, extra: str = "", db: str | None = None) -> Path:
        database = f'[database]\nurl = "{db}"\n' if db else ""
        body = textwrap.dedent(
            """\
            [tenant]
            name = "Contoso"
            accepted_domains = ["contoso.com"]

            [[connectors]]
            name = "relay"
            tls_sender_certificate_name = "*.contoso.com"

            [trust]
            use_certifi = false
            extra_ca_files = ["root.pem"]

            [probe]
            timeout = "3s"
            """
        )
        path = tmp_path / "relaycert.toml"
        path.write_text(body + database + extra + textwrap.dedent(endpoints), encoding="utf-8")
        return path

    return write


def endpoint_toml(
    name: str,
    port: int,
    mode: str = "starttls",
    host: str = "mail1.contoso.com",
    connector: str = "relay",
) -> str:
    return (
        f'\n[[endpoints]]\nname = "{name}"\nhost = "{host}"\nport = {port}\nmode = "{mode}"\n'
        f'connector = "{connector}"\naddresses = ["127.0.0.1"]\n'
    )


@pytest.fixture(scope="module")
def pebble() -> Iterator[Pebble]:
    """Debian's pebble (ACME) on loopback, one per test module."""
    if not Path(PEBBLE).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("pebble is not installed; .ci/run must install Debian's pebble")
        pytest.skip("Debian's pebble is not installed (apt-get install pebble)")
    with Pebble() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store URL: a SQLite file, and a private schema on the local PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:  # the machine always runs PostgreSQL; CI must not skip this
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL at {PG_ADMIN_URL} is not available: {exc}")
    try:
        yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


# -- a submission server for the e-mail channel and scheduled reports --------------------------


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.tls_seen: list[bool] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))  # type: ignore[arg-type]
        self.tls_seen.append(session.ssl is not None)
        return "250 OK"


def authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == b"relaycert"
        and data.password == b"s3cret-pw"
    )
    return AuthResult(success=ok, handled=False)


@contextmanager
def mail_relay(handler: object, key: Path, chain: Path) -> Iterator[int]:
    """An aiosmtpd relay on a loopback port that requires STARTTLS and then LOGIN (relaycert /
    s3cret-pw), serving ``key`` and ``chain``; its port."""
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_context(key, chain),
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.fixture
def mail_server(
    tmp_path: Path, root_ca: pki.Issued, intermediate: pki.Issued
) -> Iterator[tuple[int, Recorder, Path]]:
    leaf = pki.make_leaf(intermediate, ["localhost", "127.0.0.1"])
    key, chain = pki.write_chain(tmp_path / "smtp", "relay", leaf, intermediate)
    (tmp_path / "root.pem").write_bytes(root_ca.cert_pem())
    recorder = Recorder()
    with mail_relay(recorder, key, chain) as port:
        yield port, recorder, tmp_path / "root.pem"
