"""The probe's wire-level helpers: connecting, cleaning what a server says,
mapping library and OS errors into :mod:`monitor.errors`, and a look at a port that did not
speak TLS when it should have."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl

import aiosmtplib

from checks.base import ProbeStatus
from monitor.errors import ProbeConnectionError, ProbeError, ProbeTimeoutError
from monitor.results import ProbeResult, ProbeTarget

MAX_BANNER = 1024
NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)  # Linux: non-blocking from the start


def clean(text: str) -> str:
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text[:MAX_BANNER]


async def connect(target: ProbeTarget) -> socket.socket:
    """A connected socket within the target's timeout."""
    try:
        async with asyncio.timeout(target.timeout):
            return await open_socket(target)
    except TimeoutError as exc:
        raise _connect_error(target, exc) from exc


async def open_socket(target: ProbeTarget) -> socket.socket:
    """A connected socket, with no timeout of its own (the probe's step timer bounds it)."""
    family = socket.AF_INET6 if ":" in target.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM | NONBLOCK)
    if not NONBLOCK:
        sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (target.address, target.port))
    except BaseException as exc:
        sock.close()
        if isinstance(exc, OSError):
            raise _connect_error(target, exc) from exc
        raise
    return sock


def _connect_error(target: ProbeTarget, exc: BaseException) -> ProbeError:
    if isinstance(exc, TimeoutError):
        return ProbeTimeoutError("connect", f"no answer within {target.timeout:g}s")
    errno = getattr(exc, "errno", None)
    return ProbeConnectionError("connect", os.strerror(errno) if errno else str(exc))


def map_error(step: str, exc: BaseException, timeout: float) -> ProbeError:
    """Map third-party and builtin errors of one step into the relaycert tree."""
    if isinstance(exc, ProbeError):
        return exc
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return ProbeTimeoutError(step, f"no complete reply within {timeout:g}s")
    if isinstance(exc, aiosmtplib.SMTPResponseException):  # a reply with its code (a 421
        # greeting is also a ConnectionError to aiosmtplib: the code is what matters)
        return ProbeError(step, f"{exc.code} {clean(exc.message)}")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | ConnectionError):
        return ProbeConnectionError(step, f"connection closed by the server ({clean(str(exc))})")
    if isinstance(exc, ssl.SSLError):
        return ProbeError(step, clean(exc.reason or str(exc)))
    return ProbeError(step, clean(f"{type(exc).__name__}: {exc}"))


async def plaintext_look(target: ProbeTarget, window: float) -> str | None:
    """What the server says first, in plain text, on a new connection: its first line; ``""``
    when it says nothing within ``window`` seconds (it waits for a ClientHello: the port speaks
    TLS); ``None`` when there is nothing to read (no connection, closed at once)."""
    try:
        sock = await connect(target)
    except ProbeError:
        return None
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(window):
            data = await loop.sock_recv(sock, 512)
    except TimeoutError:
        return ""
    except OSError:
        return None
    finally:
        sock.close()
    if not data:
        return None
    return clean(data.decode("latin-1").split("\r\n", 1)[0].strip())


def plaintext_reply(result: ProbeResult, line: str) -> None:
    """The server answered its implicit-TLS port in plain text with ``line``.  A 4xx (busy,
    too many connections) is "unknown", not a TLS failure; a 220 means the port speaks plain
    SMTP and the mode is wrong; anything else leaves the failed handshake as it is."""
    if len(line) < 3 or not line[:3].isdigit():
        return
    result.banner = line
    if line.startswith("4"):
        result.status = ProbeStatus.UNREACHABLE
        result.error = f"the server answered in plain text instead of TLS: {line}"
    elif line.startswith("2"):
        result.error = (
            f"the port speaks plain SMTP ({line}), not implicit TLS; set mode = 'starttls'"
        )
