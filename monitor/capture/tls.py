"""Server-side TLS with pyOpenSSL over an asyncio stream pair, through memory BIOs.

Why pyOpenSSL: the standard library's server context verifies a client certificate against its
loaded CAs and aborts the handshake when that fails, so it cannot capture an untrusted,
expired or self-signed client certificate.  pyOpenSSL (already installed with ``acme``) lets the
verify callback accept anything; verdicts are the rules' job, not the handshake's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from monitor.errors import RelaycertError

CHUNK = 16_384


class TLSFailed(RelaycertError):
    """The client's TLS handshake or record layer failed."""


def _accept_any(
    conn: SSL.Connection, cert: object, errnum: int, depth: int, ok: int
) -> bool:  # pragma: no cover - called by OpenSSL
    return True


def server_context(cert_file: Path, key_file: Path) -> SSL.Context:
    """A server context that requests a client certificate and accepts whatever is sent.

    Old protocol versions and weak suites are allowed on purpose: the capture listener records
    what the client negotiates (``tls.protocol_outdated`` judges it), it does not enforce.
    """
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_VERSION)
    ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    ctx.use_certificate_chain_file(str(cert_file))
    ctx.use_privatekey_file(str(key_file))
    ctx.check_privatekey()
    ctx.set_verify(SSL.VERIFY_PEER, _accept_any)
    ctx.set_session_id(b"relaycert-capture")
    # Every capture is a full handshake: the evidence is the certificate the client presents
    # now, never one remembered from a resumed session.  And a session ticket carries the
    # client's certificate in a field of at most 64 KB: a larger certificate (1000 SANs) made
    # the handshake fail with "internal error" while the ticket was written.
    ctx.set_options(SSL.OP_NO_TICKET)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    return ctx


class ServerTLS:
    """TLS on an accepted connection after STARTTLS: ``handshake``, then ``recv``/``send``.

    Every read from the socket waits at most ``timeout`` seconds (a callable is asked at each
    read: the listener shortens it under stress).
    """

    def __init__(
        self,
        ctx: SSL.Context,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        timeout: float | Callable[[], float],
    ) -> None:
        self.conn = SSL.Connection(ctx, None)
        self.conn.set_accept_state()
        self.reader, self.writer = reader, writer
        self._timeout = timeout if callable(timeout) else (lambda: timeout)

    @property
    def timeout(self) -> float:
        return self._timeout()

    async def handshake(self) -> None:
        while True:
            try:
                self.conn.do_handshake()
                break
            except SSL.WantReadError:
                await self._flush()
                await self._fill()
            except SSL.Error as exc:
                await self._flush(ignore_errors=True)
                raise TLSFailed(f"TLS handshake failed: {_reason(exc)}") from None
        await self._flush()

    async def recv(self) -> bytes:
        """Up to one record's plaintext; ``b""`` at a clean close."""
        while True:
            try:
                data: bytes = self.conn.recv(CHUNK)
                return data
            except SSL.WantReadError:
                await self._flush()
                await self._fill()
            except SSL.ZeroReturnError:
                return b""
            except SSL.Error as exc:
                raise TLSFailed(f"TLS error: {_reason(exc)}") from None

    async def send(self, data: bytes) -> None:
        try:
            self.conn.sendall(data)
        except SSL.Error as exc:
            raise TLSFailed(f"TLS error: {_reason(exc)}") from None
        await self._flush()

    def details(self) -> tuple[str | None, str | None, tuple[bytes, ...]]:
        """(protocol version, cipher, client chain as presented, leaf first)."""
        leaf = self.conn.get_peer_certificate(as_cryptography=True)
        chain: list[bytes] = []
        if leaf is not None:
            chain.append(leaf.public_bytes(Encoding.DER))
            # On the server side OpenSSL's peer chain leaves the leaf out; skip it if present.
            for cert in self.conn.get_peer_cert_chain(as_cryptography=True) or []:
                der = cert.public_bytes(Encoding.DER)
                if der != chain[0]:
                    chain.append(der)
        return self.conn.get_protocol_version_name(), self.conn.get_cipher_name(), tuple(chain)

    async def _fill(self) -> None:
        try:
            data = await asyncio.wait_for(self.reader.read(CHUNK), self.timeout)
        except TimeoutError:
            raise TLSFailed(f"no TLS data from the client within {self.timeout:g}s") from None
        if not data:
            raise TLSFailed("the client closed the connection during TLS")
        self.conn.bio_write(data)

    async def _flush(self, ignore_errors: bool = False) -> None:
        while True:
            try:
                out = self.conn.bio_read(CHUNK)
            except SSL.WantReadError:
                break
            self.writer.write(out)
        try:
            await asyncio.wait_for(self.writer.drain(), self.timeout)
        except (TimeoutError, ConnectionError):
            if not ignore_errors:
                raise TLSFailed("the client stopped reading during TLS") from None


def _reason(exc: SSL.Error) -> str:
    parts = [str(item[2]) for item in (exc.args[0] if exc.args else []) if isinstance(item, tuple)]
    return "; ".join(parts) or exc.__class__.__name__
