"""Loopback SMTP servers (aiosmtpd) that present a given chain, for the demo and the tests."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from monitor.demo import ports

# aiosmtpd logs every failed TLS handshake with a traceback; the demo's servers fail some on
# purpose (the legacy TLS check offers TLS 1.1, which they refuse), so keep that off the terminal.
_LOG = logging.getLogger("mail.log")
_LOG.addHandler(logging.NullHandler())
_LOG.propagate = False


class _Sink:
    """Accepts and discards mail: the demo only needs the dialogue and the certificate."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


def free_port(host: str = "127.0.0.1") -> int:
    """A currently free TCP port (aiosmtpd's Controller cannot start on port 0), one no
    outgoing connection takes meanwhile (see :mod:`monitor.demo.ports`)."""
    return ports.free_port(host)


def server_context(key: Path, chain: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key)
    return context


class _Controller(Controller):
    def __init__(self, *args: Any, banner: str, **kwargs: Any) -> None:
        self._banner = banner
        super().__init__(*args, **kwargs)

    def factory(self) -> SMTP:
        return SMTP(self.handler, hostname=self._banner, **self.SMTP_kwargs)


@dataclass
class LoopbackSMTP:
    """One aiosmtpd server on loopback: STARTTLS, implicit TLS or plain (no STARTTLS)."""

    mode: str  # "starttls" | "tls" | "plain"
    key: Path | None = None
    chain: Path | None = None
    host: str = "127.0.0.1"
    banner: str = "mx.relaycert.test"
    port: int = 0
    _controller: Any = field(default=None, repr=False)
    _context: ssl.SSLContext | None = field(default=None, repr=False)

    def start(self) -> LoopbackSMTP:
        self.port = self.port or free_port(self.host)
        kwargs: dict[str, Any] = {}
        context = server_context(self.key, self.chain) if self.key and self.chain else None
        self._context = context
        if self.mode == "starttls":
            kwargs["tls_context"] = context
        elif self.mode == "tls":
            kwargs["ssl_context"] = context
        self._controller = _Controller(
            _Sink(),
            hostname=self.host,
            port=self.port,
            banner=self.banner,
            ready_timeout=10,
            **kwargs,
        )
        self._controller.start()
        return self

    def serve(self, key: Path, chain: Path) -> None:
        """Serve another certificate from the next handshake on (a server reloading what was
        deployed), without a restart: no connection in flight is cut."""
        assert self._context is not None, "a TLS server"
        self._context.load_cert_chain(chain, key)
        self.key, self.chain = key, chain

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
