"""The SMTP/TLS probe: one endpoint address in, one observation out.

The dialogue (:mod:`.dialogue`) never upgrades silently: connect in plain text (or with
implicit TLS on 465), read the whole greeting (Postfix postscreen drops clients that talk
first), EHLO, STARTTLS explicitly, handshake with verification *off* so an invalid chain is
still captured, EHLO again and QUIT.  Every step has a timeout and every reply is bounded
(:mod:`.channel`, 32 KiB), so a server that stalls, floods or speaks garbage costs at most one
timeout.  This module decides what to try after a failure (a look at the handshake's messages,
a busy implicit-TLS port) and turns every failure into a :class:`ProbeResult`; it never raises
for a misbehaving server.
"""

from __future__ import annotations

import ssl
import time

from checks.base import ProbeStatus
from monitor.clock import Clock, utcnow
from monitor.errors import ProbeError, ProbeTimeoutError
from monitor.probe.dialogue import Deadline, Session
from monitor.probe.tlsinfo import HandshakeRecorder, client_context, not_tls
from monitor.probe.wire import map_error, plaintext_look, plaintext_reply
from monitor.results import ProbeResult, ProbeTarget

__all__ = ["attempt", "client_context", "map_error", "probe", "unresolved"]


_CONTEXT: ssl.SSLContext | None = None
# An implicit-TLS port that answered a handshake in plain text is looked at again in plain
# text, for this long at most: a busy server's 421 comes at once; silence means the port waits
# for a ClientHello, so the handshake is tried again, this many times at most.
LOOK_WINDOW = 2.0
BUSY_LOOKS = 2


def _shared_context() -> ssl.SSLContext:
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = client_context()
    return _CONTEXT


async def probe(target: ProbeTarget, clock: Clock = utcnow) -> ProbeResult:
    """Probe one address (the result dated by ``clock``).  Never raises for server behaviour;
    an overall deadline bounds each attempt.  After a failed handshake one more look, on a new
    connection: on an implicit-TLS port that answered in plain text, what it says
    (:func:`_answered_in_plain_text`), otherwise the chain read from the handshake messages, so
    the result shows what the server presented."""
    begun = time.perf_counter()
    result, timed_out = await attempt(target, _shared_context(), clock)
    if (
        result.status is ProbeStatus.HANDSHAKE_FAILED
        and result.failed_step == "handshake"
        and not timed_out  # a stall costs one timeout, not two
    ):
        if target.mode == "tls" and not_tls(result.error or ""):
            result = await _answered_in_plain_text(target, result, clock)
        else:
            recorder = HandshakeRecorder()
            again, _ = await attempt(target, client_context(recorder), clock)
            if again.status is ProbeStatus.OK:
                again.started_at = result.started_at
                result = again
            elif recorder.chain:
                result.chain_der = recorder.chain
    result.timings["total"] = round((time.perf_counter() - begun) * 1000, 3)
    return result


def _plain_text(result: ProbeResult) -> bool:
    """Whether an implicit-TLS handshake read plain text instead of TLS."""
    return (
        result.status is ProbeStatus.HANDSHAKE_FAILED
        and result.failed_step == "handshake"
        and not_tls(result.error or "")
    )


async def _answered_in_plain_text(
    target: ProbeTarget, result: ProbeResult, clock: Clock
) -> ProbeResult:
    """The implicit-TLS handshake read plain text.  A busy server (Exim's "421 too many
    connections") says so in plain text before any TLS, and a moment later may accept: so
    look in plain text on a new connection.  A reply is the answer (a 4xx is unknown, a 220 a
    port in the wrong mode); silence means the port waits for a ClientHello, so the handshake
    is tried again.  A busy server is never a certificate verdict: when every handshake reads
    plain text and every look is silent, the result is unknown."""
    window = min(target.timeout, LOOK_WINDOW)
    for looks in range(1, BUSY_LOOKS + 1):
        line = await plaintext_look(target, window)
        if line is None:  # nothing to read: the failed handshake is the answer
            return result
        if line:
            plaintext_reply(result, line)
            return result
        again, _ = await attempt(target, _shared_context(), clock)
        if not _plain_text(again):
            again.started_at = result.started_at
            again.timings["busy_retries"] = float(looks)
            return again
    result.status = ProbeStatus.UNREACHABLE
    result.error = (
        "the server answered each TLS handshake in plain text, yet waited silently for TLS "
        "on a new connection: a busy server turning connections away (unknown, not a "
        "certificate verdict; lower [probe] per_host if this repeats)"
    )
    return result


async def attempt(
    target: ProbeTarget, context: ssl.SSLContext, clock: Clock = utcnow
) -> tuple[ProbeResult, bool]:
    """One connection's dialogue; the result, and whether it ended in a timeout."""
    session = Session(target, context, clock)
    result = session.result
    timed_out = False
    deadline = target.timeout * 3
    try:
        await session.run(deadline)
    except ProbeError as exc:
        timed_out = isinstance(exc, ProbeTimeoutError)
        _fail(result, exc.step, exc.detail, handshake=exc.step == "handshake")
    except Deadline:
        timed_out = True
        _fail(result, "deadline", f"probe did not finish within {deadline:g}s", handshake=False)
    finally:
        session.close()
    return result, timed_out


def _fail(result: ProbeResult, step: str, detail: str, *, handshake: bool) -> None:
    if result.status is ProbeStatus.OK:
        # TLS was established and the chain captured; a failure after it (EHLO again, QUIT)
        # is recorded but does not hide the certificate.
        result.failed_step, result.error = step, detail
        return
    result.status = ProbeStatus.HANDSHAKE_FAILED if handshake else ProbeStatus.UNREACHABLE
    result.failed_step, result.error = step, detail


def unresolved(target: ProbeTarget, detail: str, clock: Clock = utcnow) -> ProbeResult:
    """The result for a host whose name did not resolve."""
    result = ProbeResult(target, clock())
    _fail(result, "resolve", detail, handshake=False)
    return result
