"""The configuration file's sections, as frozen, typed models (assembled by
:class:`monitor.config.Config`)."""

from __future__ import annotations

import re
import socket
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from checks.base import DOCS_BASE, Connector, ExpiryThresholds, Severity
from monitor.alerts.lifecycle import AlertSettings
from monitor.config.units import Duration, DurationOrZero

_LABEL = r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)"
_HOST = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")
_DOMAIN_PATTERN = re.compile(r"^(\*\.)?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+\.?$")


@lru_cache(maxsize=1)
def default_ehlo_name() -> str:
    """This host's fully qualified name (servers with a HELO-name check refuse made-up names
    such as ``relaycert.invalid``), or that when the host has no dotted name."""
    name = socket.getfqdn().rstrip(".").lower()
    if "." in name and _HOST.match(name) and not name.startswith("localhost"):
        return name
    return "relaycert.invalid"


def is_host_name(value: str) -> bool:
    return bool(_HOST.match(value))


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class GraphConfig(_Model):
    """Microsoft Graph ``GET /v1.0/domains`` with the client-credentials grant."""

    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret_env: str | None = None
    client_secret_file: Path | None = None
    output: Path = Path("graph-domains.json")  # point accepted_domains_file at it
    refresh: Duration = timedelta(hours=6)
    authority: str = Field(default="https://login.microsoftonline.com", pattern=r"^https?://")
    graph_url: str = Field(default="https://graph.microsoft.com", pattern=r"^https?://")


class TenantConfig(_Model):
    name: str = "tenant"
    accepted_domains: tuple[str, ...] = Field(min_length=1)
    # Exports of Exchange Online PowerShell (docs/configuration.md#tenant), merged in at load and
    # re-read by the daemon when they change.
    accepted_domains_file: Path | None = None
    inbound_connectors_file: Path | None = None
    graph: GraphConfig | None = None

    @field_validator("accepted_domains")
    @classmethod
    def _domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for domain in value:
            if "*" in domain or not _DOMAIN_PATTERN.match(domain):
                raise ValueError(f"'{domain}' is not a domain name such as 'contoso.com'")
        return tuple(d.lower().rstrip(".") for d in value)


class ConnectorConfig(_Model):
    name: str = Field(min_length=1)
    tls_sender_certificate_name: str

    @field_validator("tls_sender_certificate_name")
    @classmethod
    def _pattern(cls, value: str) -> str:
        if not _DOMAIN_PATTERN.match(value):
            raise ValueError(
                f"'{value}' is not a valid TlsSenderCertificateName: use a domain "
                "('mail.contoso.com') or a leading wildcard ('*.contoso.com'), nothing embedded"
            )
        return value.lower().rstrip(".")

    def to_check(self) -> Connector:
        return Connector(self.name, self.tls_sender_certificate_name)


class ExchangeServerConfig(_Model):
    """Exports of Exchange Server's Send connectors and certificates (`relaycert exchange`)."""

    send_connectors_file: Path  # Get-SendConnector | ConvertTo-Json -Depth 5
    certificates_file: Path  # Get-ExchangeCertificate | ConvertTo-Json -Depth 5
    connector: str | None = (
        None  # the [[connectors]] entry they relay through (default: the only one)
    )
    send_connectors: tuple[
        str, ...
    ] = ()  # default: those whose smart host is *.mail.protection.outlook.com


class OutboundConfig(_Model):
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

    @field_validator("submit_host")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        if value is not None and not _HOST.match(value):
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


class CaptureConfig(_Model):
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
    wait: Duration = timedelta(minutes=2)
    misses_critical: int = Field(default=3, ge=1, le=1000)

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
            if "*" in domain or not _DOMAIN_PATTERN.match(domain):
                raise ValueError(f"'{domain}' is not a domain name such as 'probe.contoso.com'")
        return tuple(d.lower().rstrip(".") for d in value)

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str) -> str:
        if not _HOST.match(value):
            raise ValueError(f"'{value}' is not a host name")
        return value

    @model_validator(mode="after")
    def _pair(self) -> CaptureConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file, or neither (one is generated)")
        return self

    def addresses(self) -> tuple[tuple[str, int], ...]:
        return tuple(listen_address(item) for item in self.listen)


def listen_address(item: str) -> tuple[str, int]:
    """``"127.0.0.1:2525"`` or ``"[::1]:2525"`` -> (address, port)."""
    import ipaddress

    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, text = item.rpartition(":")
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"'{item}': give 'address:port' with a port from 1 to 65535")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"'{item}': '{host}' is not an IP address") from None
    return host, int(text)


class EndpointConfig(_Model):
    name: str = Field(min_length=1)
    host: str
    port: int = Field(default=25, ge=1, le=65535)
    mode: Literal["starttls", "tls", "auto"] = "auto"
    connector: str | None = None
    addresses: tuple[str, ...] | None = None
    ehlo_name: str | None = None
    timeout: Duration | None = None
    interval: Duration | None = None
    outbound: OutboundConfig | None = None

    @field_validator("host", "ehlo_name")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        if value is not None and not _HOST.match(value):
            raise ValueError(f"'{value}' is not a host name")
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
                    raise ValueError(f"'{address}' is not an IPv4 or IPv6 address") from None
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

    @field_validator("ehlo_name")
    @classmethod
    def _ehlo(cls, value: str) -> str:
        if not _HOST.match(value):
            raise ValueError(f"'{value}' is not a host name")
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

    @field_validator("metrics_listen")
    @classmethod
    def _metrics(cls, value: str | None) -> str | None:
        if value is not None:
            listen_address(value)
        return value

    def jitter_for(self, interval: timedelta) -> timedelta:
        if self.jitter is not None:
            return self.jitter
        return min(interval / 10, timedelta(minutes=5))


class AlertsConfig(_Model):
    min_severity: Literal["info", "warning", "unknown", "critical"] = "warning"
    persist: int = Field(default=1, ge=1, le=100)
    remind_critical: Duration = timedelta(days=1)
    remind_warning: Duration = timedelta(days=7)
    remind_info: Duration | None = None
    docs_url: str = DOCS_BASE

    def settings(self) -> AlertSettings:
        remind = {
            Severity.CRITICAL: self.remind_critical,
            Severity.UNKNOWN: self.remind_critical,
            Severity.WARNING: self.remind_warning,
        }
        if self.remind_info is not None:
            remind[Severity.INFO] = self.remind_info
        return AlertSettings(Severity(self.min_severity), self.persist, remind)


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
