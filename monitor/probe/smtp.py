"""The SMTP/TLS probe: one endpoint address in, one observation out.

The dialogue never upgrades silently: connect in plain text (or with implicit TLS on 465), read
the whole greeting (Postfix postscreen drops clients that talk first), EHLO, STARTTLS explicitly,
handshake with verification *off* so an invalid chain is still captured, EHLO again and QUIT.
Every step has a timeout and aiosmtplib bounds each reply (32 KiB), so a server that stalls,
floods or speaks garbage costs at most one timeout.  This module is the one seam where network
errors become :mod:`monitor.errors` and then a :class:`ProbeResult`; it never raises for a
misbehaving server.
"""

from __future__ import annotations

import _ssl
import asyncio
import ssl
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import cast

from aiosmtplib.errors import SMTPResponseException
from aiosmtplib.protocol import SMTPProtocol
from aiosmtplib.response import SMTPResponse

from checks.base import ProbeStatus
from monitor.errors import ProbeError, ProbeTimeoutError
from monitor.probe.result import ProbeResult, ProbeTarget
from monitor.probe.tlsinfo import (
    NO_CERTIFICATE_HINT,
    HandshakeRecorder,
    client_context,
    explain,
    not_tls,
)
from monitor.probe.wire import (
    clean,
    connect,
    map_error,
    open_plain,
    plaintext_look,
    reply_text,
)

__all__ = ["attempt", "client_context", "map_error", "probe", "unresolved"]


_CONTEXT: ssl.SSLContext | None = None


def _shared_context() -> ssl.SSLContext:
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = client_context()
    return _CONTEXT


CLOSE_WAIT = 1.0  # seconds to wait for a closed connection before aborting it


class _ProbeProtocol(SMTPProtocol):
    """aiosmtplib's protocol, telling when the connection is really gone (so the probe can wait
    for it instead of leaving a transport for the garbage collector)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.lost: asyncio.Future[None] = loop.create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.lost.done():
            self.lost.set_result(None)


class _Session:
    """One probe's dialogue, step by step, recording into ``result``.

    It drives aiosmtplib's protocol layer directly (bounded replies, per-read timeouts, the
    STARTTLS upgrade) without the client class's conveniences, which a probe does not need.
    """

    def __init__(self, target: ProbeTarget, context: ssl.SSLContext) -> None:
        self.target, self.context = target, context
        self.result = ProbeResult(target, datetime.now(UTC))
        self.protocol: _ProbeProtocol | None = None
        self._clock = time.perf_counter()

    def _lap(self, step: str) -> None:
        now = time.perf_counter()
        self.result.timings[step] = round((now - self._clock) * 1000, 3)
        self._clock = now

    async def _step(self, step: str, awaitable: Awaitable[SMTPResponse]) -> SMTPResponse:
        try:
            response = await awaitable
        except Exception as exc:
            raise map_error(step, exc, self.target.timeout) from exc
        self._lap(step)
        return response

    async def run(self) -> None:
        target, result = self.target, self.result
        timeout, implicit = target.timeout, target.mode == "tls"
        loop = asyncio.get_running_loop()
        if implicit:
            sock = await connect(target)
            self._lap("connect")
            try:
                _, protocol = await loop.create_connection(
                    lambda: _ProbeProtocol(loop),
                    sock=sock,
                    ssl=self.context,
                    server_hostname=target.host,
                    ssl_handshake_timeout=timeout,
                )
            except Exception as exc:
                sock.close()
                error = map_error("handshake", exc, timeout)
                raise type(error)(error.step, explain(error.detail)) from exc
        else:
            protocol = await open_plain(target, lambda: _ProbeProtocol(loop))
            self._lap("connect")
        self.protocol = protocol
        if implicit:
            self._lap("handshake")
            self._capture_tls()
        greeting = await self._step("greeting", protocol.read_response(timeout))
        result.banner = reply_text(greeting)
        if greeting.code != 220:
            raise ProbeError("greeting", f"server is not ready: {result.banner}")
        name = target.ehlo_name.encode("ascii")
        ehlo = await self._step("ehlo", protocol.execute_command(b"EHLO", name, timeout=timeout))
        if ehlo.code != 250:
            await self._ehlo_refused(ehlo, name, implicit)
            return
        lines = ehlo.message.splitlines()
        result.ehlo = tuple(clean(line) for line in lines[:64])
        if not implicit:
            # The keyword may be on any line after the first, the last one included.
            if not any(line.split(" ", 1)[0].upper() == "STARTTLS" for line in lines[1:]):
                result.status = ProbeStatus.STARTTLS_MISSING
                return
            try:
                reply = await protocol.start_tls(
                    self.context, server_hostname=target.host, timeout=timeout
                )
            except SMTPResponseException as exc:
                result.status = ProbeStatus.STARTTLS_REFUSED
                result.failed_step = "starttls"
                result.starttls_reply = result.error = f"{exc.code} {clean(exc.message)}"
                return
            except Exception as exc:
                error = map_error("handshake", exc, timeout)
                raise type(error)("handshake", explain(error.detail)) from exc
            self._lap("starttls")
            result.starttls_reply = reply_text(reply)
            self._capture_tls()
            await self._step("ehlo_tls", protocol.execute_command(b"EHLO", name, timeout=timeout))
        await self._step("quit", protocol.execute_command(b"QUIT", timeout=timeout))

    async def _ehlo_refused(self, ehlo: SMTPResponse, name: bytes, implicit: bool) -> None:
        """EHLO not answered 250: a HELO-only server (500/502: "not recognised") cannot offer
        STARTTLS; any other refusal is about the name, which ``ehlo_name`` sets."""
        protocol, timeout = self.protocol, self.target.timeout
        assert protocol is not None
        if ehlo.code in (500, 502) and not implicit:
            helo = await self._step(
                "helo", protocol.execute_command(b"HELO", name, timeout=timeout)
            )
            if helo.code == 250:
                self.result.status = ProbeStatus.STARTTLS_MISSING
                self.result.error = (
                    f"the server does not know EHLO ({reply_text(ehlo)}) and accepts only HELO, "
                    "which cannot negotiate STARTTLS"
                )
                return
        raise ProbeError(
            "ehlo",
            f"the EHLO name '{self.target.ehlo_name}' was refused: {reply_text(ehlo)}; set "
            "`ehlo_name` (on the endpoint or in [probe]) to a name the server accepts, such "
            "as this host's DNS name",
        )

    def _capture_tls(self) -> None:
        transport = self.protocol.transport if self.protocol else None
        ssl_object = transport.get_extra_info("ssl_object") if transport else None
        if ssl_object is None:
            raise ProbeError("handshake", "no TLS session after the handshake")
        self.result.tls_version = ssl_object.version()
        cipher = ssl_object.cipher()
        self.result.cipher = cipher[0] if cipher else None
        chain = ssl_object._sslobj.get_unverified_chain() or []
        self.result.chain_der = tuple(cert.public_bytes(_ssl.ENCODING_DER) for cert in chain)
        if not self.result.chain_der:
            raise ProbeError(
                "handshake",
                f"{self.result.tls_version} with {self.result.cipher} but no certificate"
                + NO_CERTIFICATE_HINT,
            )
        self.result.status = ProbeStatus.OK

    async def close(self) -> None:
        """Close the connection and wait (briefly) until it is closed; abort it otherwise."""
        protocol = self.protocol
        if protocol is None or protocol.transport is None:
            return
        transport = cast(asyncio.Transport, protocol.transport)
        transport.close()
        try:
            async with asyncio.timeout(CLOSE_WAIT):  # cheaper than wait_for(shield(...))
                await protocol.lost  # our own future: cancelling it loses nothing
        except TimeoutError:
            transport.abort()
        except asyncio.CancelledError:
            transport.abort()
            raise


async def probe(target: ProbeTarget) -> ProbeResult:
    """Probe one address.  Never raises for server behaviour; an overall deadline bounds each
    attempt.  After a failed handshake one more look, on a new connection: on an implicit-TLS
    port whether the server answers in plain text (a busy server's 421), otherwise the chain
    read from the handshake messages, so the result shows what the server presented."""
    result, timed_out = await attempt(target, _shared_context())
    if (
        result.status is ProbeStatus.HANDSHAKE_FAILED
        and result.failed_step == "handshake"
        and not timed_out  # a stall costs one timeout, not two
    ):
        if target.mode == "tls" and not_tls(result.error or ""):
            await plaintext_look(target, result)
        else:
            recorder = HandshakeRecorder()
            again, _ = await attempt(target, client_context(recorder))
            if again.status is ProbeStatus.OK:
                again.started_at = result.started_at
                result = again
            elif recorder.chain:
                result.chain_der = recorder.chain
    result.timings["total"] = round(
        (datetime.now(UTC) - result.started_at).total_seconds() * 1000, 3
    )
    return result


async def attempt(target: ProbeTarget, context: ssl.SSLContext) -> tuple[ProbeResult, bool]:
    """One connection's dialogue; the result, and whether it ended in a timeout."""
    session = _Session(target, context)
    result = session.result
    timed_out = False
    # Each step has its own timeout; the overall deadline stops a server that answers every
    # step just in time from holding the probe for steps x timeout.
    deadline = target.timeout * 3
    try:
        async with asyncio.timeout(deadline):
            await session.run()
    except ProbeError as exc:
        timed_out = isinstance(exc, ProbeTimeoutError)
        _fail(result, exc.step, exc.detail, handshake=exc.step == "handshake")
    except TimeoutError:
        timed_out = True
        _fail(result, "deadline", f"probe did not finish within {deadline:g}s", handshake=False)
    finally:
        await session.close()
    return result, timed_out


def _fail(result: ProbeResult, step: str, detail: str, *, handshake: bool) -> None:
    if result.status is ProbeStatus.OK:
        # TLS was established and the chain captured; a failure after it (EHLO again, QUIT)
        # is recorded but does not hide the certificate.
        result.failed_step, result.error = step, detail
        return
    result.status = ProbeStatus.HANDSHAKE_FAILED if handshake else ProbeStatus.UNREACHABLE
    result.failed_step, result.error = step, detail


def unresolved(target: ProbeTarget, detail: str) -> ProbeResult:
    """The result for a host whose name did not resolve."""
    result = ProbeResult(target, datetime.now(UTC))
    _fail(result, "resolve", detail, handshake=False)
    return result
