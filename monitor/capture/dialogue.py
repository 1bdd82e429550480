"""One SMTP session at the capture listener, bounded at every step.

It is never a relay: RCPT is accepted only for the probe domains (550 otherwise), a message is
read and discarded (only its size is counted, never its bytes kept), and at the end of DATA the
session's TLS details, client chain and envelope become a :class:`Capture`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from OpenSSL import SSL

from monitor.capture.tls import CHUNK, ServerTLS, TLSFailed
from monitor.clock import Clock, utcnow
from monitor.errors import RelaycertError
from monitor.logs import event
from monitor.probe.wire import clean

TOKEN_PREFIX = "rc-"  # noqa: S105 - a recipient prefix, not a secret
_TOKEN = re.compile(r"^[0-9a-f]{8,64}$")
_PATH = re.compile(r"^\s*<([^<>]{0,320})>")
log = logging.getLogger("relaycert.capture")


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on one session: seconds per read, lines, message size, recipients, commands."""

    timeout: float = 30.0
    max_message: int = 65_536
    max_line: int = 2_048
    max_recipients: int = 10
    max_commands: int = 100


@dataclass(frozen=True, slots=True)
class Capture:
    """One message that reached the capture listener: who sent it, over what, with which
    client chain (DER, leaf first, exactly as presented; empty when none was), to whom."""

    peer: str
    peer_port: int
    at: datetime
    ehlo: str | None
    tls: bool
    tls_version: str | None
    cipher: str | None
    chain_der: tuple[bytes, ...]
    mail_from: str
    recipients: tuple[str, ...]
    size: int
    tokens: tuple[str, ...] = field(default=())

    def summary(self) -> dict[str, object]:
        """What is stored and shown about the session (never the body)."""
        return {
            "peer": self.peer,
            "ehlo": self.ehlo,
            "tls": self.tls,
            "mail_from": self.mail_from,
            "recipients": list(self.recipients),
            "tokens": list(self.tokens),
            "size": self.size,
            "at": self.at.isoformat(),
        }


class _Closed(RelaycertError):
    """The client went away (or must be sent away)."""


def token_of(recipient: str, domains: frozenset[str]) -> str | None:
    """The probe token in ``rc-<hex>@<probe domain>``, if ``recipient`` is one."""
    local, _, domain = recipient.rpartition("@")
    local = local.lower()
    if domain.lower().rstrip(".") not in domains or not local.startswith(TOKEN_PREFIX):
        return None
    token = local[len(TOKEN_PREFIX) :]
    return token if _TOKEN.match(token) else None


class Dialogue:
    """Runs one session; ``deliver`` receives each complete message's :class:`Capture`,
    dated by ``clock``."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        hostname: str,
        domains: frozenset[str],
        ctx: SSL.Context,
        limits: Limits,
        deliver: Callable[[Capture], None],
        timeout: Callable[[], float] | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.reader, self.writer, self.clock = reader, writer, clock
        self.hostname, self.domains, self.ctx = hostname, domains, ctx
        self.limits, self.deliver = limits, deliver
        # Seconds per read, asked again at each read (the listener shortens it under stress).
        self._timeout = timeout or (lambda: limits.timeout)
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.peer, self.peer_port = str(peer[0]), int(peer[1])
        self.tls: ServerTLS | None = None
        self.tls_info: tuple[str | None, str | None, tuple[bytes, ...]] = (None, None, ())
        self.buf = bytearray()
        self.ehlo: str | None = None
        self.mail_from: str | None = None
        self.recipients: list[str] = []

    # -- transport ------------------------------------------------------------------------------

    async def _recv(self) -> bytes:
        if self.tls is not None:
            return await self.tls.recv()
        try:
            return await asyncio.wait_for(self.reader.read(CHUNK), self._timeout())
        except TimeoutError:
            raise _Closed("timeout") from None

    async def _send(self, line: str) -> None:
        data = (line + "\r\n").encode("ascii", "replace")
        if self.tls is not None:
            await self.tls.send(data)
            return
        self.writer.write(data)
        try:
            await asyncio.wait_for(self.writer.drain(), self._timeout())
        except TimeoutError:
            raise _Closed("the client stopped reading") from None

    async def _line(self) -> str:
        while True:
            end = self.buf.find(b"\n")
            if end >= 0:
                line = bytes(self.buf[:end]).rstrip(b"\r")
                del self.buf[: end + 1]
                return line.decode("utf-8", "replace")
            if len(self.buf) > self.limits.max_line:
                await self._send("500 5.5.2 Line too long")
                raise _Closed("line too long")
            chunk = await self._recv()
            if not chunk:
                raise _Closed("closed")
            self.buf += chunk

    # -- the session ----------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._send(f"220 {self.hostname} ESMTP relaycert capture (not a relay)")
            for _ in range(self.limits.max_commands):
                if not await self._command(await self._line()):
                    return
            await self._send("421 4.7.0 Too many commands; closing")
        except TLSFailed as exc:  # the client's handshake or record layer: say why, once
            event(log, logging.INFO, "capture.tls_failed", peer=self.peer, reason=str(exc))
            return
        except (_Closed, ConnectionError):
            return

    async def _command(self, line: str) -> bool:
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        if verb in ("EHLO", "HELO"):
            self.ehlo = clean(arg.strip()[:255]) or None  # the client's text: no controls
            self._reset()
            if verb == "HELO":
                await self._send(f"250 {self.hostname}")
            else:
                await self._ehlo_reply()
        elif verb == "STARTTLS":
            await self._starttls()
        elif verb == "MAIL":
            await self._mail(arg)
        elif verb == "RCPT":
            await self._rcpt(arg)
        elif verb == "DATA":
            await self._data()
        elif verb == "RSET":
            self._reset()
            await self._send("250 2.0.0 Ok")
        elif verb == "NOOP":
            await self._send("250 2.0.0 Ok")
        elif verb == "QUIT":
            await self._send("221 2.0.0 Bye")
            return False
        else:
            await self._send("502 5.5.2 Command not implemented")
        return True

    def _reset(self) -> None:
        self.mail_from, self.recipients = None, []

    async def _ehlo_reply(self) -> None:
        lines = [self.hostname, f"SIZE {self.limits.max_message}", "8BITMIME"]
        if self.tls is None:
            lines.append("STARTTLS")
        lines.append("ENHANCEDSTATUSCODES")
        for line in lines[:-1]:
            await self._send(f"250-{line}")
        await self._send(f"250 {lines[-1]}")

    async def _starttls(self) -> None:
        if self.tls is not None:
            await self._send("503 5.5.1 TLS already active")
            return
        # RFC 3207: anything the client sent before the handshake is discarded.
        self.buf.clear()
        await self._send("220 2.0.0 Ready to start TLS")
        tls = ServerTLS(self.ctx, self.reader, self.writer, self._timeout)
        await tls.handshake()
        self.tls, self.tls_info = tls, tls.details()
        self.ehlo = None
        self._reset()

    async def _mail(self, arg: str) -> None:
        match = _PATH.match(arg[5:]) if arg.upper().startswith("FROM:") else None
        if match is None:
            await self._send("501 5.5.4 Syntax: MAIL FROM:<address>")
            return
        self._reset()
        self.mail_from = clean(match.group(1))
        await self._send("250 2.1.0 Ok")

    async def _rcpt(self, arg: str) -> None:
        match = _PATH.match(arg[3:]) if arg.upper().startswith("TO:") else None
        if self.mail_from is None:
            await self._send("503 5.5.1 MAIL first")
        elif match is None:
            await self._send("501 5.5.4 Syntax: RCPT TO:<address>")
        elif len(self.recipients) >= self.limits.max_recipients:
            await self._send("452 4.5.3 Too many recipients")
        elif match.group(1).rpartition("@")[2].lower().rstrip(".") not in self.domains:
            await self._send("550 5.7.1 Relay access denied: this is a relaycert capture listener")
        else:
            self.recipients.append(clean(match.group(1)))
            await self._send("250 2.1.5 Ok")

    async def _data(self) -> None:
        if self.mail_from is None or not self.recipients:
            await self._send("503 5.5.1 RCPT first")
            return
        await self._send("354 End data with <CR><LF>.<CR><LF>")
        size = await self._discard_body()
        version, cipher, chain = self.tls_info
        capture = Capture(
            peer=self.peer,
            peer_port=self.peer_port,
            at=self.clock(),
            ehlo=self.ehlo,
            tls=self.tls is not None,
            tls_version=version,
            cipher=cipher,
            chain_der=chain,
            mail_from=self.mail_from,
            recipients=tuple(self.recipients),
            size=size,
            tokens=tuple(
                t for t in (token_of(r, self.domains) for r in self.recipients) if t is not None
            ),
        )
        self._reset()
        self.deliver(capture)
        if size > self.limits.max_message:
            await self._send("552 5.3.4 Message too big; the envelope was recorded")
        else:
            await self._send("250 2.0.0 Ok: captured and discarded")

    async def _discard_body(self) -> int:
        """Read up to the ``<CRLF>.<CRLF>`` terminator; keep nothing but the count."""
        size, tail = 0, b"\r\n"  # the DATA command's own line end precedes the body
        while True:
            window = tail + bytes(self.buf)
            found = window.find(b"\r\n.\r\n")
            if found >= 0:
                size += max(0, found - len(tail))
                del self.buf[: found + 5 - len(tail)]
                return size
            size += len(self.buf)
            tail = window[-4:]
            self.buf.clear()
            chunk = await self._recv()
            if not chunk:
                raise _Closed("closed during DATA")
            self.buf += chunk
