"""The capture listener: its listening sockets and the sessions they accept.

:class:`CaptureListener` binds the configured addresses, admits each connection or refuses it
with a 421 (:mod:`.peers`: reserved connections for the on-prem servers, per-peer limits, a
shorter read timeout for strangers under stress), runs one :class:`~.dialogue.Dialogue` per
session within ``session_timeout``, and keeps each message that carries a valid token in its
check's evidence (:mod:`.waiters`, :mod:`.evidence`: every delivery, none refused as used).
Every other message is an :class:`~.waiters.Arrival` for ``on_arrival``: with a
:class:`~monitor.capture.tokens.Claim` when it carries a token this installation issued that has
not expired and no check is waiting for (a late probe, a replay, a hand test send), with the
reason otherwise (no token, forged, expired, or from a peer outside the check's
``relay_addresses``: *unattributed*, never an endpoint's result).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from monitor.capture.dialogue import Capture, Dialogue
from monitor.capture.evidence import Delivery, RelayPeers
from monitor.capture.options import ListenerSettings
from monitor.capture.peers import Admission, peer_group
from monitor.capture.tokens import Claim
from monitor.capture.waiters import Arrival, Taken, Waiters
from monitor.clock import Clock, utcnow
from monitor.errors import ConfigError
from monitor.logs import event

log = logging.getLogger("relaycert.capture")


class CaptureListener:
    """``await start()``, then ``expect(token)`` / arrivals, ``await close()``.  ``clock`` dates
    each message that arrives (and so what its token is verified against)."""

    def __init__(
        self,
        settings: ListenerSettings,
        on_arrival: Callable[[Arrival], None] | None = None,
        known: Iterable[str] = (),
        *,
        clock: Clock = utcnow,
    ) -> None:
        self.settings, self.on_arrival, self.clock = settings, on_arrival, clock
        self.servers: list[asyncio.Server] = []
        self.waiters = Waiters(settings.keys)
        self.admission = Admission(
            max_connections=settings.max_connections,
            reserved=settings.reserved,
            max_per_peer=settings.max_per_peer,
            rate_per_peer=settings.rate_per_peer,
            known=known,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.sessions = 0
        self.refused = 0
        self.unattributed = 0

    async def start(self) -> None:
        for host, port in self.settings.addresses:
            try:
                server = await asyncio.start_server(self._accept, host, port, limit=65_536)
            except OSError as exc:
                await self.close()
                raise ConfigError(
                    f"[capture] listen: cannot listen on {host}:{port}: {exc.strerror}; "
                    "choose a free port (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
                ) from None
            self.servers.append(server)
        event(log, logging.INFO, "capture.listening", addresses=" ".join(self.bound()))

    def bound(self) -> list[str]:
        """``host:port`` of every listening socket (the real port when 0 was asked for)."""
        found = []
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                found.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        return found

    def port(self) -> int:
        return int(self.servers[0].sockets[0].getsockname()[1])

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        # Abort the sessions' connections (cancelling the tasks asyncio's stream server made
        # would be reported as errors); each session then ends at its next read.
        for writer in list(self._writers):
            writer.transport.abort()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        for server in self.servers:
            await server.wait_closed()
        self.servers = []
        self.waiters.cancel_all()

    # -- tokens -------------------------------------------------------------------------------

    def expect(
        self, token: str, relay: RelayPeers | None = None, endpoint: str | None = None
    ) -> asyncio.Future[Capture]:
        """The future the first delivery of ``token`` that counts completes (from a peer in
        ``relay``, when given); register before submitting.  Every delivery is kept."""
        return self.waiters.expect(token, relay, endpoint)

    def forget(self, token: str) -> None:
        self.waiters.forget(token)

    def release(self, token: str) -> tuple[Delivery, ...]:
        """The check of ``token`` stops waiting: every delivery so far (later ones are kept)."""
        return self.waiters.release(token)

    def deliveries(self, token: str) -> tuple[Delivery, ...]:
        return self.waiters.deliveries(token)

    def settle(self, token: str) -> tuple[Delivery, ...] | None:
        return self.waiters.settle(token)

    def know(self, address: str) -> None:
        """Count ``address`` as an on-prem server's (it may use the reserved connections)."""
        self.admission.know(address)

    def is_known(self, peer: str) -> bool:
        return self.admission.is_known(peer)

    def _deliver(self, capture: Capture) -> None:
        claims, reason = self.waiters.claims(capture)
        taken = self.waiters.take(capture, claims) if claims else None
        if taken is not None and taken.counted:
            self.know(capture.peer)  # it delivered a probe that counts: an on-prem server
        arrival = _arrival(capture, claims, reason, taken)
        if arrival is not None and (arrival.claim is None or arrival.reason is not None):
            self.unattributed += 1
        event(
            log,
            logging.INFO,
            "capture.message",
            peer=capture.peer,
            ehlo=capture.ehlo,
            tls=capture.tls_version or "none",
            client_certificates=len(capture.chain_der),
            recipients=len(capture.recipients),  # never the addresses: they carry the tokens
            matched=bool(taken and taken.waiting and taken.counted),
            deliveries=len(self.waiters.deliveries(claims[0].token)) if claims else 0,
            unattributed=(arrival.reason if arrival is not None else None) or "",
        )
        if arrival is None or self.on_arrival is None:
            return
        try:
            self.on_arrival(arrival)
        except Exception:  # a storage hiccup must not end the listener
            log.exception("capture.arrival_failed")

    # -- connections --------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        peer = str((writer.get_extra_info("peername") or ("?",))[0])
        known = self.is_known(peer)
        group = peer_group(peer)  # the limits count an IPv6 /64 as one peer
        refused = self.admission.refusal(group, known)
        if refused is not None:
            self.refused += 1
            writer.write(f"421 4.7.0 {refused}; try again later\r\n".encode())
            await _close(writer)
            return
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        self.admission.enter(group)
        self.sessions += 1
        settings = self.settings
        try:
            dialogue = Dialogue(
                reader,
                writer,
                hostname=settings.hostname,
                domains=settings.domains,
                ctx=settings.ctx,
                limits=settings.limits,
                deliver=self._deliver,
                timeout=None if known else self._timeout,
                clock=self.clock,
            )
            async with asyncio.timeout(settings.session_timeout):
                await dialogue.run()
        except TimeoutError:
            event(log, logging.INFO, "capture.session_timeout", peer=peer)
        except Exception:  # hostile input must never end the listener
            log.exception("capture.session_failed")
        finally:
            self.admission.leave(group)
            if task is not None:
                self._tasks.discard(task)
            self._writers.discard(writer)
            await _close(writer)

    def _timeout(self) -> float:
        """Seconds per read for a peer that is not known: shorter while the listener is busy."""
        limits = self.settings.limits
        if self.admission.stressed():
            return min(limits.timeout, self.settings.stress_timeout)
        return limits.timeout


def _arrival(
    capture: Capture, claims: list[Claim], reason: str | None, taken: Taken | None
) -> Arrival | None:
    """What ``on_arrival`` is told of a message (``None``: its waiting check took it)."""
    if not claims or taken is None:
        return Arrival(capture, None, reason)
    if not taken.counted:  # kept with its check (when it could be), shown as unattributed
        return Arrival(capture, claims[0], taken.why, taken.known, taken.waiting)
    if taken.waiting:
        return None
    return Arrival(capture, claims[0], None, known=taken.known)


async def _close(writer: asyncio.StreamWriter) -> None:
    try:
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 2)
    except (TimeoutError, ConnectionError, OSError):
        pass
