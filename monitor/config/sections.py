"""The configuration file's sections, as frozen, typed models (assembled by
:class:`monitor.config.Config`)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from checks.base import Connector, ExpiryThresholds
from monitor.config.common import DOMAIN_PATTERN as _DOMAIN_PATTERN
from monitor.config.common import HOST as _HOST
from monitor.config.common import Model as _Model
from monitor.config.common import Name, default_ehlo_name, escaped, listen_address
from monitor.config.delivery import DeliveryConnectorConfig as DeliveryConnectorConfig
from monitor.config.integrations import GraphConfig, OutboundConfig
from monitor.config.units import Duration, DurationOrZero
from monitor.observed.settings import EndpointObserved


class TenantConfig(_Model):
    name: Name = "tenant"
    accepted_domains: tuple[str, ...] = Field(min_length=1)
    # Exports of Exchange Online PowerShell (docs/configuration.md#tenant), merged in at load and
    # re-read by the daemon when they change.
    accepted_domains_file: Path | None = None
    inbound_connectors_file: Path | None = None
    outbound_connectors_file: Path | None = None
    graph: GraphConfig | None = None

    @field_validator("accepted_domains")
    @classmethod
    def _domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for domain in value:
            if "*" in domain or not _DOMAIN_PATTERN.match(domain):
                raise ValueError(f"'{escaped(domain)}' is not a domain name such as 'contoso.com'")
        return tuple(d.lower().rstrip(".") for d in value)


class ConnectorConfig(_Model):
    name: Name
    tls_sender_certificate_name: str

    @field_validator("tls_sender_certificate_name")
    @classmethod
    def _pattern(cls, value: str) -> str:
        if not _DOMAIN_PATTERN.match(value):
            raise ValueError(
                f"'{escaped(value)}' is not a valid TlsSenderCertificateName: use a domain "
                "('mail.contoso.com') or a leading wildcard ('*.contoso.com'), nothing embedded"
            )
        return value.lower().rstrip(".")

    def to_check(self) -> Connector:
        return Connector(self.name, self.tls_sender_certificate_name)


class EndpointConfig(_Model):
    name: Name
    host: str
    port: int = Field(default=25, ge=1, le=65535)
    mode: Literal["starttls", "tls", "auto"] = "auto"
    connector: Name | None = None
    addresses: tuple[str, ...] | None = None
    ehlo_name: str | None = None
    timeout: Duration | None = None
    interval: Duration | None = None
    outbound: OutboundConfig | None = None
    # A relay endpoint's own log: what Exchange Online answered to its real mail.
    observed: EndpointObserved | None = None
    # Only instances of this site probe the endpoint (``[instance] site``); default: any.
    site: Name | None = None

    @field_validator("host", "ehlo_name")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        if value is not None and not _HOST.match(value):
            raise ValueError(f"'{escaped(value)}' is not a host name")
        return value

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        import ipaddress

        if value is not None:
            if not value:
                raise ValueError("give at least one address, or remove the key to resolve `host`")
            for address in value:
                try:
                    ipaddress.ip_address(address)
                except ValueError:
                    raise ValueError(
                        f"'{escaped(address)}' is not an IPv4 or IPv6 address"
                    ) from None
        return value

    @property
    def effective_mode(self) -> Literal["starttls", "tls"]:
        """``auto`` means implicit TLS on 465 and STARTTLS everywhere else."""
        if self.mode == "auto":
            return "tls" if self.port == 465 else "starttls"
        return self.mode


class TrustConfig(_Model):
    use_certifi: bool = True
    extra_ca_files: tuple[Path, ...] = ()


class ExpiryConfig(_Model):
    warning_days: float = Field(default=30, gt=0, le=3650, allow_inf_nan=False)
    warning_fraction: float = Field(default=1 / 3, gt=0, le=1, allow_inf_nan=False)
    critical_days: float = Field(default=7, gt=0, le=3650, allow_inf_nan=False)
    critical_fraction: float = Field(default=0.1, gt=0, le=1, allow_inf_nan=False)

    @model_validator(mode="after")
    def _order(self) -> ExpiryConfig:
        if self.critical_days > self.warning_days:
            raise ValueError("critical_days must not be larger than warning_days")
        if self.critical_fraction > self.warning_fraction:
            raise ValueError("critical_fraction must not be larger than warning_fraction")
        return self

    def to_check(self) -> ExpiryThresholds:
        return ExpiryThresholds(
            self.warning_days, self.warning_fraction, self.critical_days, self.critical_fraction
        )


class ProbeConfig(_Model):
    concurrency: int = Field(default=32, ge=1, le=4096)
    per_host: int = Field(default=4, ge=1, le=256)
    timeout: Duration = timedelta(seconds=10)
    legacy_tls_every: DurationOrZero = timedelta(days=1)
    ehlo_name: str = Field(default_factory=lambda: default_ehlo_name())
    # relaycert scan over many addresses: probe worker processes (0: one per core; 1: none).
    workers: int = Field(default=0, ge=0, le=64)

    @field_validator("ehlo_name")
    @classmethod
    def _ehlo(cls, value: str) -> str:
        if not _HOST.match(value):
            raise ValueError(f"'{escaped(value)}' is not a host name")
        return value


class DnsConfig(_Model):
    nameservers: tuple[str, ...] = ()

    @field_validator("nameservers")
    @classmethod
    def _servers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            _nameserver(item)
        return value

    def servers(self) -> tuple[tuple[str, int], ...]:
        """``("192.0.2.53", 53)`` pairs; ``"[2001:db8::53]:5353"`` and ``"ip:port"`` accepted."""
        return tuple(_nameserver(item) for item in self.nameservers)


def _nameserver(item: str) -> tuple[str, int]:
    import ipaddress

    host, port = item, 53
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else 53
    elif item.count(":") == 1:
        host, _, text = item.partition(":")
        if not text.isdigit():
            raise ValueError(f"'{item}': the port after ':' must be a number")
        port = int(text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"'{item}' is not an IP address (optionally with :port)") from None
    if not 0 < port < 65536:
        raise ValueError(f"'{item}': port out of range")
    return host, port


class InstanceConfig(_Model):
    """This ``relaycert run`` among several sharing one PostgreSQL store."""

    name: Name | None = None  # default: the host name
    site: Name | None = None  # probe only endpoints of this site
    heartbeat: Duration = timedelta(seconds=10)  # an instance is dead after three missed

    @property
    def dead_after(self) -> timedelta:
        return self.heartbeat * 3

    def label(self) -> str:
        import socket

        return self.name or socket.gethostname()


class DaemonConfig(_Model):
    interval: Duration = timedelta(hours=1)
    jitter: DurationOrZero | None = None  # default: a tenth of the interval, at most 5 minutes
    auto_accept_renewals: bool = True
    outbox_interval: Duration = timedelta(seconds=30)
    outbox_lease: Duration = timedelta(minutes=2)
    retry_base: Duration = timedelta(seconds=30)
    shutdown_grace: Duration = timedelta(seconds=10)
    log_format: Literal["kv", "json"] = "kv"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    metrics_listen: str | None = None  # "127.0.0.1:9464": /metrics and /healthz
    # Who may read the status page "/" on that listener: loopback peers only (a reverse proxy
    # with authentication in front of it), anyone who reaches the port, or no one.
    status_page: Literal["loopback", "any", "off"] = "loopback"
    # Host names the listener is reached by (a reverse proxy's), besides its addresses and
    # localhost: a request naming any other host is refused (DNS rebinding).
    http_hosts: tuple[str, ...] = ()

    @field_validator("metrics_listen")
    @classmethod
    def _metrics(cls, value: str | None) -> str | None:
        if value is not None:
            listen_address(value)
        return value

    @field_validator("http_hosts")
    @classmethod
    def _http_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _HOST.match(name):
                raise ValueError(
                    f"'{escaped(name)}' is not a host name: give the name alone, without "
                    "scheme or port, e.g. 'relaycert.example.net'"
                )
        return tuple(name.lower().rstrip(".") for name in value)

    def jitter_for(self, interval: timedelta) -> timedelta:
        if self.jitter is not None:
            return self.jitter
        return min(interval / 10, timedelta(minutes=5))


class ReportsConfig(_Model):
    schedule: str | None = None  # cron, UTC: "0 7 * * 1" is Mondays 07:00
    period: Duration = timedelta(days=7)
    archive_dir: Path = Path("reports")
    keep: int = Field(default=52, ge=1)
    formats: tuple[Literal["html", "csv", "json"], ...] = ("html", "csv", "json")
    email_channel: str | None = None
    recipients: tuple[str, ...] = ()

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(value, timezone="UTC")
            except ValueError as exc:
                raise ValueError(
                    f"'{value}' is not a crontab expression (minute hour day month weekday), "
                    f"e.g. '0 7 * * 1': {exc}"
                ) from None
        return value


class DatabaseConfig(_Model):
    url: SecretStr | None = None
    url_env: str | None = None
    url_file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DatabaseConfig:
        given = [k for k in ("url", "url_env", "url_file") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of url, url_env, url_file (found {', '.join(given)})")
        return self
