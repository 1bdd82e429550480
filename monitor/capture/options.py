"""What one capture listener runs with: :class:`ListenerSettings`, built once from the
``[capture]`` section (its certificate loaded or generated, its token secret read or created) so
the listener itself never reads the configuration."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from OpenSSL import SSL

from monitor.capture.certs import listener_files
from monitor.capture.dialogue import Limits
from monitor.capture.tls import server_context
from monitor.capture.tokens import TokenKeys, load_secret
from monitor.clock import Clock, utcnow
from monitor.errors import ConfigError

if TYPE_CHECKING:  # the configuration models are loaded by whoever loaded the file
    from monitor.config.integrations import CaptureConfig


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
    def from_section(
        cls, capture: CaptureConfig, source: Path, clock: Clock = utcnow
    ) -> ListenerSettings:
        """The settings of ``capture`` (its paths already resolved against the configuration
        file ``source``, which errors name); a certificate generated now is dated by ``clock``."""
        cert, key = listener_files(
            capture.cert_file, capture.key_file, capture.state_dir, capture.hostname, clock
        )
        try:
            ctx = server_context(cert, key)
        except SSL.Error as exc:
            raise ConfigError(
                f"{source}: [capture] cannot use {cert} and {key}: {exc}; "
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
                load_secret(capture.token_secret_file, capture.state_dir), capture.token_lifetime
            ),
            reserved=capture.reserved,
            stress_timeout=capture.stress_timeout.total_seconds(),
        )
