"""One connection's SMTP/TLS dialogue (:class:`Session`): connect (or handshake at once on an
implicit-TLS port), the whole greeting, EHLO, STARTTLS explicitly, the handshake with
verification off, EHLO again and QUIT, recording into a :class:`ProbeResult` as it goes.

One timer bounds every step and the whole dialogue; network errors become
:mod:`monitor.errors` here.  :mod:`.smtp` decides what to try and what a failure means.
"""

from __future__ import annotations

import asyncio
import ssl
import time

from checks.base import ProbeStatus
from monitor.clock import Clock
from monitor.errors import ProbeError, ProbeTimeoutError
from monitor.probe.chain import peer_chain
from monitor.probe.channel import Channel, Reply
from monitor.probe.tlsinfo import NO_CERTIFICATE_HINT, explain
from monitor.probe.wire import clean, map_error, open_socket
from monitor.results import ProbeResult, ProbeTarget


def reply_text(reply: Reply) -> str:
    return clean(f"{reply.code} {reply.message}")


class Deadline(Exception):
    """The overall deadline passed (as opposed to one step's timeout)."""


class Session:
    """One probe's dialogue, step by step, recording into ``result``.

    One timer serves every step.  A step only notes when it started; the timer, when it fires,
    checks whether the current step has had its timeout (or the probe its overall deadline,
    whichever comes first) and otherwise sets itself again for that moment.  A server that
    answers every step just in time cannot hold the probe for steps x timeout, and a probe
    that goes well costs one timer, not one per step.  ``clock`` dates the result.
    """

    def __init__(self, target: ProbeTarget, context: ssl.SSLContext, clock: Clock) -> None:
        self.target, self.context = target, context
        self.result = ProbeResult(target, clock())
        self.channel: Channel | None = None
        self.step = "connect"
        self._loop = asyncio.get_running_loop()
        self._end = self._step_end = 0.0
        self._expired = self._final = False
        self._clock = time.perf_counter()

    def _lap(self, step: str) -> None:
        now = time.perf_counter()
        self.result.timings[step] = round((now - self._clock) * 1000, 3)
        self._clock = now

    async def run(self, deadline: float) -> None:
        """The dialogue within ``deadline`` seconds; a step that takes longer than the
        target's timeout raises :class:`ProbeTimeoutError`, the deadline :class:`Deadline`."""
        loop, timeout = self._loop, self.target.timeout
        task = asyncio.current_task()
        assert task is not None
        now = loop.time()
        self._end, self._step_end = now + deadline, now + timeout
        self._timer = loop.call_at(min(self._end, self._step_end), self._expire, task)
        try:
            await self._dialogue()
        except asyncio.CancelledError:
            if not self._expired or task.uncancel() > 0:
                raise  # cancelled from outside (shutdown), not by the timer
            if self._final:
                raise Deadline() from None
            detail = "no answer" if self.step == "connect" else "no complete reply"
            raise ProbeTimeoutError(self.step, f"{detail} within {timeout:g}s") from None
        except ProbeError:
            raise
        except (OSError, ssl.SSLError) as exc:  # resets, TLS alerts, bad records
            error = map_error(self.step, exc, timeout)
            if self.step == "handshake":
                raise type(error)("handshake", explain(error.detail)) from exc
            raise error from exc
        finally:
            self._timer.cancel()

    def _expire(self, task: asyncio.Task[None]) -> None:
        when = min(self._end, self._step_end)
        if self._loop.time() < when:  # a later step started since: wait for its timeout
            self._timer = self._loop.call_at(when, self._expire, task)
            return
        self._expired, self._final = True, self._end <= self._step_end
        task.cancel()

    def _begin(self, step: str) -> None:
        """Start ``step``: its timeout runs from now."""
        self.step = step
        self._step_end = self._loop.time() + self.target.timeout

    async def _dialogue(self) -> None:
        target, result = self.target, self.result
        implicit = target.mode == "tls"
        channel = self.channel = Channel(await open_socket(target))
        self._lap("connect")
        if implicit:
            self._begin("handshake")
            await channel.start_tls(self.context, target.host)
            self._capture_tls(channel)
            self._lap("handshake")
        self._begin("greeting")
        greeting = await channel.reply("greeting")
        self._lap("greeting")
        result.banner = reply_text(greeting)
        if greeting.code != 220:
            raise ProbeError("greeting", f"server is not ready: {result.banner}")
        name = target.ehlo_name.encode("ascii")
        self._begin("ehlo")
        ehlo = await channel.command("ehlo", b"EHLO " + name)
        self._lap("ehlo")
        if ehlo.code != 250:
            await self._ehlo_refused(channel, ehlo, name, implicit)
            return
        lines = ehlo.message.splitlines()
        result.ehlo = tuple(clean(line) for line in lines[:64])
        if not implicit:
            # The keyword may be on any line after the first, the last one included.
            if not any(line.split(" ", 1)[0].upper() == "STARTTLS" for line in lines[1:]):
                result.status = ProbeStatus.STARTTLS_MISSING
                return
            self._begin("starttls")
            reply = await channel.command("starttls", b"STARTTLS")
            if reply.code != 220:
                result.status = ProbeStatus.STARTTLS_REFUSED
                result.failed_step = "starttls"
                result.starttls_reply = result.error = reply_text(reply)
                return
            result.starttls_reply = reply_text(reply)
            self._begin("handshake")
            await channel.start_tls(self.context, target.host)
            self._capture_tls(channel)
            self._lap("starttls")
            self._begin("ehlo_tls")
            await channel.command("ehlo_tls", b"EHLO " + name)
            self._lap("ehlo_tls")
        self._begin("quit")
        await channel.command("quit", b"QUIT")
        self._lap("quit")

    async def _ehlo_refused(
        self, channel: Channel, ehlo: Reply, name: bytes, implicit: bool
    ) -> None:
        """EHLO not answered 250: a HELO-only server (500/502: "not recognised") cannot offer
        STARTTLS; any other refusal is about the name, which ``ehlo_name`` sets."""
        if ehlo.code in (500, 502) and not implicit:
            self._begin("helo")
            helo = await channel.command("helo", b"HELO " + name)
            self._lap("helo")
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

    def _capture_tls(self, channel: Channel) -> None:
        ssl_object = channel.tls
        if ssl_object is None:
            raise ProbeError("handshake", "no TLS session after the handshake")
        self.result.tls_version = ssl_object.version()
        cipher = ssl_object.cipher()
        self.result.cipher = cipher[0] if cipher else None
        self.result.chain_der = peer_chain(ssl_object)
        if not self.result.chain_der:
            raise ProbeError(
                "handshake",
                f"{self.result.tls_version} with {self.result.cipher} but no certificate"
                + NO_CERTIFICATE_HINT,
            )
        self.result.status = ProbeStatus.OK

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
