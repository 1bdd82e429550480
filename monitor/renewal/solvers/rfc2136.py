"""DNS-01 through RFC 2136: the TXT record added and removed with TSIG-signed dynamic updates
(dnspython), then waited for at the primary (settings:
:class:`~monitor.renewal.settings.Rfc2136Settings`)."""

from __future__ import annotations

import contextlib
import time

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update

from monitor.errors import RenewalError
from monitor.renewal.settings import Rfc2136Settings
from monitor.renewal.solvers.base import host_port, record_name
from monitor.secrets import read_secret


class Rfc2136:
    """Adds and removes the TXT record with TSIG-signed dynamic updates, then waits until the
    primary serves it."""

    challenge = "dns-01"

    def __init__(self, settings: Rfc2136Settings, where: str) -> None:
        self.settings = settings
        self.host, self.port = host_port(settings.server, 53)
        secret = (
            read_secret(
                f"{where}.solver.key_secret", settings.key_secret_env, settings.key_secret_file
            )
            or ""
        )
        self.keyring = dns.tsigkeyring.from_text({settings.key_name: secret})
        self.algorithm = dns.name.from_text(settings.algorithm)
        self.zone = dns.name.from_text(settings.zone)
        self.added: list[tuple[str, str]] = []

    def _update(self, name: str, value: str, add: bool) -> None:
        update = dns.update.Update(self.zone, keyring=self.keyring, keyalgorithm=self.algorithm)
        if add:
            update.add(name, 60, "TXT", f'"{value}"')
        else:
            update.delete(name, "TXT", f'"{value}"')
        try:
            response = dns.query.tcp(update, self.host, port=self.port, timeout=10)
        except dns.tsig.PeerError as exc:  # "The peer didn't like the signature we sent"
            raise RenewalError(
                f"rfc2136 solver: {self.host}:{self.port} rejected the TSIG signature "
                f"({type(exc).__name__}): key_name, the secret or the algorithm do not match "
                "the server's key"
            ) from exc
        except (OSError, dns.exception.DNSException) as exc:
            raise RenewalError(
                f"rfc2136 solver: update to {self.host}:{self.port} failed: {exc}"
            ) from exc
        if response.rcode() != dns.rcode.NOERROR:
            raise RenewalError(
                f"rfc2136 solver: {self.host}:{self.port} refused the update "
                f"({dns.rcode.to_text(response.rcode())}); check the TSIG key and "
                "the zone's update policy"
            )

    def _served(self, name: str, value: str) -> bool:
        query = dns.message.make_query(name, dns.rdatatype.TXT)
        try:
            answer = dns.query.udp(query, self.host, port=self.port, timeout=3)
        except (OSError, dns.exception.DNSException):
            return False
        return any(
            value.encode() in b"".join(r.strings)
            for rrset in answer.answer
            for r in rrset
            if rrset.rdtype == dns.rdatatype.TXT
        )

    def present(self, domain: str, token_path: str, validation: str) -> None:
        name = record_name(domain)
        self._update(name, validation, add=True)
        self.added.append((name, validation))
        deadline = time.monotonic() + self.settings.propagation_timeout.total_seconds()
        while not self._served(name, validation):
            if time.monotonic() > deadline:
                raise RenewalError(
                    f"rfc2136 solver: {name} TXT not served by "
                    f"{self.host}:{self.port} within the propagation timeout"
                )
            time.sleep(0.5)

    def cleanup(self) -> None:
        for name, value in self.added:
            # A stale challenge record is harmless; the next order adds its own.
            with contextlib.suppress(RenewalError):
                self._update(name, value, add=False)
        self.added.clear()
