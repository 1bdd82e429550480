"""The capture listener: listening sockets, fair admission, and who is waiting for which token.

An outbound check registers its token with :meth:`CaptureListener.expect` before it submits the
probe message and awaits the future.  Every other message is an :class:`Arrival` for
``on_arrival``: with a :class:`~monitor.capture.tokens.Claim` when it carries a token this
installation issued that has not expired or been used (a late probe, a hand test send), with the
reason otherwise (no token, forged, expired, replayed: *unattributed*, never an endpoint's
result).  Several probes in flight never mix: each waits for its own token.

Admission serves the on-prem servers first: ``reserved`` connections are kept for *known* peers
(addresses of configured endpoints, addresses probe messages were submitted to, peers that
delivered a valid token), and while half the connections are in use other peers' sessions get
the short ``stress_timeout`` per read, as Postfix's smtpd does under stress.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from OpenSSL import SSL

from monitor.capture.certs import listener_files
from monitor.capture.dialogue import Capture, Dialogue, Limits
from monitor.capture.tls import server_context
from monitor.capture.tokens import Claim, Rejected, TokenKeys, load_secret
from monitor.errors import ConfigError
from monitor.logs import event

if TYPE_CHECKING:
    from monitor.config.loader import Config

log = logging.getLogger("relaycert.capture")


@dataclass(frozen=True)
class ListenerSettings:
    addresses: tuple[tuple[str, int], ...]
    hostname: str
    domains: frozenset[str]
    ctx: SSL.Context
    limits: Limits
    session_timeout: float
    max_connections: int
    max_per_peer: int
    rate_per_peer: int  # new sessions per peer per minute
    keys: TokenKeys
    reserved: int = 0  # connections only known peers may use
    stress_timeout: float = 5.0  # per read, for other peers while half the connections are used

    @classmethod
    def from_config(cls, config: Config) -> ListenerSettings:
        capture = config.capture
        if capture is None:
            raise ConfigError(f"{config.source}: no [capture] section; see docs/outbound.md")
        cert, key = listener_files(
            config.resolve_path(capture.cert_file) if capture.cert_file else None,
            config.resolve_path(capture.key_file) if capture.key_file else None,
            config.resolve_path(capture.state_dir),
            capture.hostname,
        )
        try:
            ctx = server_context(cert, key)
        except SSL.Error as exc:
            raise ConfigError(
                f"{config.source}: [capture] cannot use {cert} and {key}: {exc}; "
                "check that the key matches the certificate"
            ) from None
        return cls(
            addresses=capture.addresses(),
            hostname=capture.hostname,
            domains=frozenset(capture.probe_domains),
            ctx=ctx,
            limits=Limits(
                timeout=capture.timeout.total_seconds(), max_message=capture.max_message_size
            ),
            session_timeout=capture.session_timeout.total_seconds(),
            max_connections=capture.max_connections,
            max_per_peer=capture.max_per_peer,
            rate_per_peer=capture.rate_per_peer,
            keys=TokenKeys(
                load_secret(
                    config.resolve_path(capture.token_secret_file)
                    if capture.token_secret_file
                    else None,
                    config.resolve_path(capture.state_dir),
                ),
                capture.token_lifetime,
            ),
            reserved=capture.reserved,
            stress_timeout=capture.stress_timeout.total_seconds(),
        )


@dataclass(frozen=True, slots=True)
class Arrival:
    """A message no check was waiting for: its valid token's claim (a late probe, a test send),
    or why it has none (``reason``: the capture is unattributed)."""

    capture: Capture
    claim: Claim | None
    reason: str | None = None


USED_TOKENS = 65_536  # tokens remembered as used (each counts once)
LATE_KEPT = 4_096  # late arrivals kept for the checks that just gave up on them
PEERS_KEPT = 10_000  # peers remembered for the rate limit before the idle ones are swept


def normal_address(address: str) -> str:
    """``address`` in one spelling (IPv4-mapped IPv6 as IPv4), for comparing peers."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    mapped = getattr(parsed, "ipv4_mapped", None)
    return str(mapped or parsed)


def peer_group(address: str) -> str:
    """What the per-peer limits count: an IPv4 address, or an IPv6 address's /64 (one host or
    site is routinely given a whole /64, so counting single IPv6 addresses would let one
    client open as many sessions as it has addresses)."""
    try:
        parsed = ipaddress.ip_address(normal_address(address))
    except ValueError:
        return address
    if parsed.version == 4:
        return str(parsed)
    return str(ipaddress.ip_network(f"{parsed}/64", strict=False))


class CaptureListener:
    """``await start()``, then ``expect(token)`` / arrivals, ``await close()``."""

    def __init__(
        self,
        settings: ListenerSettings,
        on_arrival: Callable[[Arrival], None] | None = None,
        known: Iterable[str] = (),
    ) -> None:
        self.settings, self.on_arrival = settings, on_arrival
        self.servers: list[asyncio.Server] = []
        self._waiting: dict[str, asyncio.Future[Capture]] = {}
        self._used: OrderedDict[str, None] = OrderedDict()
        # Valid tokens that arrived with no check waiting, for a check whose result is not
        # stored yet (it just gave up): :func:`monitor.pipeline.outbound.settle` takes them.
        self.late: OrderedDict[str, Capture] = OrderedDict()
        self._known = {normal_address(a) for a in known}
        self._active = 0
        self._per_peer: dict[str, int] = defaultdict(int)
        self._recent: dict[str, deque[float]] = defaultdict(deque)
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
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    # -- tokens -------------------------------------------------------------------------------

    def expect(self, token: str) -> asyncio.Future[Capture]:
        future: asyncio.Future[Capture] = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        return future

    def forget(self, token: str) -> None:
        future = self._waiting.pop(token, None)
        if future is not None and not future.done():
            future.cancel()

    def know(self, address: str) -> None:
        """Count ``address`` as an on-prem server's (it may use the reserved connections)."""
        self._known.add(normal_address(address))

    def is_known(self, peer: str) -> bool:
        return normal_address(peer) in self._known

    def _claims(self, capture: Capture) -> tuple[list[Claim], str | None]:
        """The valid, unused claims of ``capture``'s tokens, or why there are none.  Each token
        counts once: a replay of a used one is refused."""
        claims: list[Claim] = []
        reasons: list[str] = []
        for token in capture.tokens:
            found = self.settings.keys.verify(token, capture.at)
            if isinstance(found, Rejected):
                reasons.append(found.reason)
            elif found.token in self._used:
                reasons.append("the token was already used (a replayed or duplicated message)")
            else:
                claims.append(found)
        if len({c.endpoint_id for c in claims}) > 1:
            return [], "tokens of several endpoints in one message"
        if not claims:
            return [], (reasons[0] if reasons else "no relaycert token in the recipients")
        for claim in claims:
            self._used[claim.token] = None
            if len(self._used) > USED_TOKENS:
                self._used.popitem(last=False)
        return claims, None

    def _deliver(self, capture: Capture) -> None:
        claims, reason = self._claims(capture)
        matched = False
        for claim in claims:
            future = self._waiting.pop(claim.token, None)
            if future is not None and not future.done():
                future.set_result(capture)
                matched = True
        if claims:
            self.know(capture.peer)  # it delivered a probe: an on-prem server
        else:
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
            matched=matched,
            unattributed=reason or "",
        )
        if claims and not matched:
            for claim in claims:
                self.late[claim.token] = capture
                if len(self.late) > LATE_KEPT:
                    self.late.popitem(last=False)
        if matched or self.on_arrival is None:
            return
        try:
            self.on_arrival(Arrival(capture, claims[0] if claims else None, reason))
        except Exception:  # a storage hiccup must not end the listener
            log.exception("capture.arrival_failed")

    # -- connections --------------------------------------------------------------------------

    def _stressed(self) -> bool:
        return self._active * 2 >= self.settings.max_connections

    def _admit(self, peer: str, known: bool) -> str | None:
        """Why a new connection from ``peer`` is refused, or ``None``."""
        settings = self.settings
        if self._active >= settings.max_connections:
            return "too many connections"
        if not known and self._active >= settings.max_connections - settings.reserved:
            return "too many connections"
        if self._per_peer.get(peer, 0) >= settings.max_per_peer:
            return "too many connections from your address"
        now = time.monotonic()
        if len(self._recent) > PEERS_KEPT:  # many peers (an IPv6 range): forget the idle ones
            for gone in [p for p, r in self._recent.items() if not r or now - r[-1] > 60]:
                if gone not in self._per_peer:
                    del self._recent[gone]
        recent = self._recent[peer]
        while recent and now - recent[0] > 60:
            recent.popleft()
        if len(recent) >= settings.rate_per_peer:
            return "too many connections per minute from your address"
        recent.append(now)
        return None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        peer = str((writer.get_extra_info("peername") or ("?",))[0])
        known = self.is_known(peer)
        group = peer_group(peer)  # the limits count an IPv6 /64 as one peer
        refused = self._admit(group, known)
        if refused is not None:
            self.refused += 1
            writer.write(f"421 4.7.0 {refused}; try again later\r\n".encode())
            await _close(writer)
            return
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        self._active += 1
        self._per_peer[group] += 1
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
            )
            async with asyncio.timeout(settings.session_timeout):
                await dialogue.run()
        except TimeoutError:
            event(log, logging.INFO, "capture.session_timeout", peer=peer)
        except Exception:  # hostile input must never end the listener
            log.exception("capture.session_failed")
        finally:
            self._active -= 1
            self._per_peer[group] -= 1
            if not self._per_peer[group]:
                del self._per_peer[group]
                if not self._recent[group]:
                    del self._recent[group]
            if task is not None:
                self._tasks.discard(task)
            self._writers.discard(writer)
            await _close(writer)

    def _timeout(self) -> float:
        """Seconds per read for a peer that is not known: shorter while the listener is busy."""
        limits = self.settings.limits
        if self._stressed():
            return min(limits.timeout, self.settings.stress_timeout)
        return limits.timeout


async def _close(writer: asyncio.StreamWriter) -> None:
    try:
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 2)
    except (TimeoutError, ConnectionError, OSError):
        pass
