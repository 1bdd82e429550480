"""One probe connection: a non-blocking socket, SMTP replies read within bounds, and TLS driven
through memory BIOs.

This is the probe's hot path, so it is lean on purpose (``bench/scan.py`` measures it): the
socket is read with the event loop's ``sock_recv``, written with ``send``, closed at once; TLS
is an :class:`ssl.SSLObject` over two :class:`ssl.MemoryBIO` rather than asyncio's SSL
transport.  (Running the handshake's heavy steps in a thread pool, where OpenSSL works without
the GIL, was measured and dropped: the hand-offs cost ~0.3 ms of CPU per probe and, with the
server sharing the cores, bought no throughput.)

A reply is bounded like aiosmtplib bounds it (8 KiB per line, 32 KiB in all), so a server that
floods costs one read, not memory.  Errors are :mod:`monitor.errors` with the step they
happened in; timeouts are the caller's (one deadline per step, see :mod:`.smtp`).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import NamedTuple

from monitor.errors import ProbeConnectionError, ProbeError
from monitor.probe.wire import clean

MAX_LINE = 8192  # bytes in one reply line
MAX_REPLY = 4 * MAX_LINE  # bytes in one (multi-line) reply
CHUNK = 65536


class Reply(NamedTuple):
    """One SMTP reply: its code and its text (lines joined by newlines, codes stripped)."""

    code: int
    message: str


def parse_reply(buffer: bytearray, step: str) -> Reply | None:
    """The first complete reply in ``buffer`` (removed from it), or ``None`` until it is."""
    start = 0
    while True:  # find the reply's last line: the first whose code is not followed by "-"
        end = buffer.find(b"\n", start)
        if end < 0 or end - start >= MAX_LINE:
            if end - start >= MAX_LINE or len(buffer) - start > MAX_LINE:
                raise ProbeError(step, "reply line too long (over 8 KiB)")
            return None
        if buffer[start + 3 : start + 4] != b"-":
            break
        start = end + 1
    lines = bytes(buffer[: end + 1]).split(b"\n")[:-1]
    del buffer[: end + 1]
    for line in lines:
        if not line[:3].isdigit():
            text = clean(line.decode("utf-8", "replace").strip())
            raise ProbeError(step, f"malformed SMTP reply line: {text}")
    message = b"\n".join([line[4:].strip(b" \t\r") for line in lines])
    return Reply(int(lines[-1][:3]), message.decode("utf-8", "surrogateescape"))


class Channel:
    """A connected socket, plain text until :meth:`start_tls`, then TLS."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.buffer = bytearray()  # received plain text not yet parsed as a reply
        self.tls: ssl.SSLObject | None = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()

    # -- bytes --------------------------------------------------------------------------------

    def _send(self, data: bytes) -> asyncio.Future[None] | None:
        """Send ``data``: at once when the socket takes it all (nearly always), else a future
        that finishes when it is sent."""
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return None
        return asyncio.ensure_future(self.loop.sock_sendall(self.sock, data[sent:]))

    async def _flush(self) -> None:
        """Send what TLS has written (records, alerts)."""
        pending = self._outgoing.read()
        if pending:
            waiting = self._send(pending)
            if waiting is not None:
                await waiting

    async def _recv(self, step: str) -> bytes:
        data = await self.loop.sock_recv(self.sock, CHUNK)
        if not data:
            raise ProbeConnectionError(step, "connection closed by the server (unexpected EOF)")
        return data

    async def _feed(self) -> None:
        """Send what TLS has written, then hand TLS the next bytes received (or their end,
        so its next step raises OpenSSL's own error)."""
        await self._flush()
        data = await self.loop.sock_recv(self.sock, CHUNK)
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    # -- SMTP ---------------------------------------------------------------------------------

    async def reply(self, step: str) -> Reply:
        """The next complete reply."""
        buffer = self.buffer
        while True:
            if buffer:
                reply = parse_reply(buffer, step)
                if reply is not None:
                    return reply
            if len(buffer) > MAX_REPLY:
                raise ProbeError(step, "reply too long (over 32 KiB)")
            if self.tls is None:
                buffer += await self._recv(step)
            else:
                buffer += await self._read_tls(step)

    async def command(self, step: str, line: bytes) -> Reply:
        """Send one command line and read its reply."""
        if self.tls is None:
            waiting = self._send(line + b"\r\n")
            if waiting is not None:
                await waiting
        else:
            self.tls.write(line + b"\r\n")
            await self._flush()
        return await self.reply(step)

    # -- TLS ----------------------------------------------------------------------------------

    async def start_tls(self, context: ssl.SSLContext, server_name: str) -> None:
        """The TLS handshake (verification as ``context`` says).  Bytes the server sent before
        it are discarded: a reply pipelined past STARTTLS is an injection attempt."""
        self.buffer.clear()
        tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_name)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._feed()
        self.tls = tls
        # Whatever the handshake wrote last (TLS 1.3: the client Finished) goes out with the
        # next command, in one segment.

    async def _read_tls(self, step: str) -> bytes:
        assert self.tls is not None
        while True:
            try:
                data = self.tls.read(CHUNK)
            except ssl.SSLWantReadError:
                await self._feed()
                continue
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
                raise ProbeConnectionError(
                    step, "connection closed by the server (unexpected EOF)"
                ) from exc
            if not data:
                raise ProbeConnectionError(step, "connection closed by the server (TLS closed)")
            return data

    def close(self) -> None:
        """Close the socket at once.  No TLS close_notify: the probe ends with QUIT, after
        which the server closes the session itself, and an alert sent after that would only
        make its kernel answer with a reset."""
        self.sock.close()
