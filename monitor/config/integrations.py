"""Sections about what lies beside the probe: the capture listener and outbound checks, the
Exchange Server exports, Microsoft Graph."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from monitor.config.common import DOMAIN_PATTERN, HOST, Model, listen_address
from monitor.config.units import Duration, DurationOrZero


class GraphConfig(Model):
    """Microsoft Graph ``GET /v1.0/domains`` with the client-credentials grant."""

    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret_env: str | None = None
    client_secret_file: Path | None = None
    output: Path = Path("graph-domains.json")  # point accepted_domains_file at it
    refresh: Duration = timedelta(hours=6)
    authority: str = Field(default="https://login.microsoftonline.com", pattern=r"^https?://")
    graph_url: str = Field(default="https://graph.microsoft.com", pattern=r"^https?://")


class ExchangeServerConfig(Model):
    """Exports of Exchange Server's Send connectors and certificates (`relaycert exchange`)."""

    send_connectors_file: Path  # Get-SendConnector | ConvertTo-Json -Depth 5
    certificates_file: Path  # Get-ExchangeCertificate | ConvertTo-Json -Depth 5
    connector: str | None = (
        None  # the [[connectors]] entry they relay through (default: the only one)
    )
    send_connectors: tuple[
        str, ...
    ] = ()  # default: those whose smart host is *.mail.protection.outlook.com


class OutboundConfig(Model):
    """An endpoint's outbound check: submit a probe message through the on-prem server, which
    routes the probe domain to the capture listener with its Exchange Online TLS settings."""

    submit_host: str | None = None  # default: the endpoint's host (and its `addresses`)
    submit_port: int = Field(default=25, ge=1, le=65535)
    starttls: Literal["opportunistic", "require", "none"] = "opportunistic"
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    mail_from: str | None = None  # default: relaycert@<[probe] ehlo_name>
    probe_domain: str | None = None  # default: the first of [capture] probe_domains
    # The addresses (or networks) the relay delivers to the capture listener from; a token
    # delivered from any other peer then counts for nothing.  Empty: every peer counts.
    relay_addresses: tuple[str, ...] = ()

    @field_validator("relay_addresses")
    @classmethod
    def _relay_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(relay_network(item) for item in value)

    @field_validator("submit_host")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        if value is not None and not HOST.match(value):
            raise ValueError(f"'{value}' is not a host name")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> OutboundConfig:
        if self.password_env and self.password_file:
            raise ValueError("give only one of password_env, password_file")
        if (self.password_env or self.password_file) and not self.username:
            raise ValueError("a password needs `username`")
        if self.username and not (self.password_env or self.password_file):
            raise ValueError(
                "`username` needs `password_env` or `password_file` (never the password itself)"
            )
        return self


def relay_network(item: str) -> str:
    """``item`` as an address or network (``192.0.2.10``, ``2001:db8::/64``), or an error that
    says what to give instead."""
    import ipaddress

    try:
        ipaddress.ip_network(item.strip(), strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            network = ipaddress.ip_network(item.strip(), strict=False)
            address = item.strip().partition("/")[0]
            raise ValueError(
                f"'{item}' has host bits set: did you mean {network} (the network) or "
                f"{address} (the address)?"
            ) from None
        raise ValueError(
            f"'{item}' is not an IP address or network such as '192.0.2.10' or "
            "'2001:db8::/64' (host names are not resolved: give the addresses the relay "
            "delivers from, as the capture listener sees them)"
        ) from None
    return item.strip()


class CaptureConfig(Model):
    """The capture listener that sees the on-prem servers' client certificates."""

    listen: tuple[str, ...] = ("127.0.0.1:2525",)
    probe_domains: tuple[str, ...] = Field(min_length=1)
    hostname: str = "relaycert-capture.invalid"
    cert_file: Path | None = None
    key_file: Path | None = None
    state_dir: Path = Path("capture")
    timeout: Duration = timedelta(seconds=30)
    session_timeout: Duration = timedelta(minutes=5)
    max_message_size: int = Field(default=65_536, ge=1_024, le=10_485_760)
    max_connections: int = Field(default=100, ge=1, le=10_000)
    max_per_peer: int = Field(default=20, ge=1, le=10_000)
    rate_per_peer: int = Field(default=120, ge=1, le=100_000)
    # Connections only the on-prem servers may use (their addresses: configured, submitted to,
    # or seen delivering a valid token), so a flood from elsewhere cannot shut them out.
    reserved: int = Field(default=25, ge=0, le=10_000)
    # The per-read timeout of other peers' sessions while half the connections are in use.
    stress_timeout: Duration = timedelta(seconds=5)
    wait: Duration = timedelta(minutes=2)
    # After the first delivery of a check's token, how long the check collects more (a replay,
    # a race) before it is judged; at most ``wait``.
    linger: DurationOrZero = timedelta(seconds=5)
    misses_critical: int = Field(default=3, ge=1, le=1000)
    token_secret_file: Path | None = None
    token_lifetime: Duration = timedelta(hours=6)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("give at least one 'address:port' to listen on")
        for item in value:
            listen_address(item)
        return value

    @field_validator("probe_domains")
    @classmethod
    def _domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for domain in value:
            if "*" in domain or not DOMAIN_PATTERN.match(domain):
                raise ValueError(f"'{domain}' is not a domain name such as 'probe.contoso.com'")
        return tuple(d.lower().rstrip(".") for d in value)

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str) -> str:
        if not HOST.match(value):
            raise ValueError(f"'{value}' is not a host name")
        return value

    @model_validator(mode="after")
    def _pair(self) -> CaptureConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file, or neither (one is generated)")
        if self.reserved >= self.max_connections:
            raise ValueError(
                f"reserved ({self.reserved}) must be below max_connections "
                f"({self.max_connections}), or no other peer could connect at all"
            )
        if self.token_lifetime < self.wait:
            raise ValueError("token_lifetime must be at least wait, or no probe could arrive")
        return self

    def addresses(self) -> tuple[tuple[str, int], ...]:
        return tuple(listen_address(item) for item in self.listen)


class RevocationConfig(Model):
    """``[revocation]``: the CRL check of every leaf (both directions, and a freshly issued
    certificate in the renewal gate)."""

    enabled: bool = True
    timeout: Duration = timedelta(seconds=10)  # one whole CRL download
    max_size: int = Field(default=10 * 1024 * 1024, ge=1024, le=512 * 1024 * 1024)  # bytes
    proxy: str | None = None  # http://proxy:3128 for CRL downloads (no environment proxies)
    grace: DurationOrZero = timedelta(days=1)  # unknown this long: warning, not information
    # Ask again after this even when the CRL's nextUpdate is later (none: at nextUpdate).
    refresh: Duration | None = None

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("give the proxy as http://host:port")
        return value
