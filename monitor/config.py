"""The configuration file, parsed once into frozen, typed models.

Units are converted at the edge (``"10s"``, ``"90d"`` become :class:`~datetime.timedelta`), every
cross-field rule lives in :meth:`Config._cross_check`, and every error names the file, the key
and what to do (:func:`load`).  Secrets are never written in the file: ``*_env`` and ``*_file``
keys name where to read them.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from checks.base import DOCS_BASE, Connector, ExpiryThresholds, Severity
from monitor.alerting import AlertSettings
from monitor.errors import ConfigError
from monitor.renewal.settings import RenewalSettings
from notifications.registry import AnyChannelSettings

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any, allow_zero: bool = False) -> timedelta:
    """``"10s"``, ``"5m"``, ``"6h"``, ``"90d"``, ``"2w"``, or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '10s', '5m' or '90d'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"'{value}' is not a duration; write e.g. '10s', '5m', '6h' or '90d'")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError("a duration must be greater than zero")
    return timedelta(seconds=seconds)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
DurationOrZero = Annotated[timedelta, BeforeValidator(lambda v: parse_duration(v, True))]
_LABEL = r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)"
_HOST = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")
_DOMAIN_PATTERN = re.compile(r"^(\*\.)?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+\.?$")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class TenantConfig(_Model):
    name: str = "tenant"
    accepted_domains: tuple[str, ...] = Field(min_length=1)

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
    warning_days: float = Field(default=30, gt=0)
    warning_fraction: float = Field(default=1 / 3, gt=0, le=1)
    critical_days: float = Field(default=7, gt=0)
    critical_fraction: float = Field(default=0.1, gt=0, le=1)

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
    timeout: Duration = timedelta(seconds=10)
    ehlo_name: str = "relaycert.invalid"


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


class Config(_Model):
    """The whole configuration file.  ``source`` is the file it came from."""

    tenant: TenantConfig
    connectors: tuple[ConnectorConfig, ...] = ()
    endpoints: tuple[EndpointConfig, ...] = Field(min_length=1)
    trust: TrustConfig = TrustConfig()
    expiry: ExpiryConfig = ExpiryConfig()
    probe: ProbeConfig = ProbeConfig()
    dns: DnsConfig = DnsConfig()
    database: DatabaseConfig = DatabaseConfig()
    daemon: DaemonConfig = DaemonConfig()
    alerts: AlertsConfig = AlertsConfig()
    reports: ReportsConfig = ReportsConfig()
    renewals: tuple[RenewalSettings, ...] = ()
    channels: tuple[AnyChannelSettings, ...] = ()
    source: Path = Field(default=Path("relaycert.toml"), exclude=True)

    @model_validator(mode="after")
    def _cross_check(self) -> Config:
        connectors = {c.name for c in self.connectors}
        seen_connectors: set[str] = set()
        for index, connector in enumerate(self.connectors):
            if connector.name in seen_connectors:
                raise _at(("connectors", index, "name"), f"duplicate connector '{connector.name}'")
            seen_connectors.add(connector.name)
        seen: set[str] = set()
        for index, endpoint in enumerate(self.endpoints):
            if endpoint.name in seen:
                raise _at(("endpoints", index, "name"), f"duplicate endpoint '{endpoint.name}'")
            seen.add(endpoint.name)
            if endpoint.connector is not None and endpoint.connector not in connectors:
                known = ", ".join(sorted(connectors)) or "none defined"
                raise _at(
                    ("endpoints", index, "connector"),
                    f"unknown connector '{endpoint.connector}' (known: {known})",
                )
            if endpoint.interval is not None and endpoint.interval < timedelta(seconds=10):
                raise _at(("endpoints", index, "interval"), "must be at least 10s")
            if endpoint.mode == "starttls" and endpoint.port == 465:
                raise _at(
                    ("endpoints", index, "mode"),
                    "port 465 is implicit TLS; use mode = 'tls' or 'auto'",
                )
        seen_channels: set[str] = set()
        for index, channel in enumerate(self.channels):
            if channel.name in seen_channels:
                raise _at(("channels", index, "name"), f"duplicate channel '{channel.name}'")
            seen_channels.add(channel.name)
            for name in channel.connectors:
                if name not in connectors:
                    raise _at(("channels", index, "connectors"), f"unknown connector '{name}'")
            for severity in channel.severities:
                if severity not in {s.value for s in Severity}:
                    raise _at(
                        ("channels", index, "severities"),
                        f"'{severity}' is not one of info, warning, unknown, critical",
                    )
        seen_renewals: set[str] = set()
        for index, renewal in enumerate(self.renewals):
            if renewal.name in seen_renewals:
                raise _at(("renewals", index, "name"), f"duplicate renewal '{renewal.name}'")
            seen_renewals.add(renewal.name)
            for name in renewal.endpoints:
                if name not in seen:
                    raise _at(("renewals", index, "endpoints"), f"unknown endpoint '{name}'")
        mail = self.reports.email_channel
        if mail is not None and not any(
            c.name == mail and c.type == "email" for c in self.channels
        ):
            raise _at(("reports", "email_channel"), f"'{mail}' is not an e-mail channel")
        return self

    def endpoint(self, name: str) -> EndpointConfig | None:
        return next((e for e in self.endpoints if e.name == name), None)

    def endpoint_interval(self, endpoint: EndpointConfig) -> timedelta:
        return endpoint.interval or self.daemon.interval

    def channel_where(self, index: int) -> str:
        return f"{self.source}: channels[{index}] ({self.channels[index].name})"

    def connector(self, name: str | None) -> ConnectorConfig | None:
        return next((c for c in self.connectors if c.name == name), None)

    def endpoint_timeout(self, endpoint: EndpointConfig) -> timedelta:
        return endpoint.timeout or self.probe.timeout

    def resolve_path(self, path: Path) -> Path:
        """Relative paths in the file are relative to the file's folder."""
        return path if path.is_absolute() else (self.source.parent / path)

    def database_url(self) -> str:
        """The store URL: from ``url``, ``url_env`` or ``url_file``; default a SQLite file."""
        db = self.database
        if db.url_env is not None:
            value = os.environ.get(db.url_env)
            if not value:
                raise ConfigError(
                    f"{self.source}: [database] url_env: environment variable {db.url_env} "
                    "is not set; export it or use `url`"
                )
            return value
        if db.url_file is not None:
            path = self.resolve_path(db.url_file)
            try:
                return path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"{self.source}: [database] url_file: cannot read {path}: {exc.strerror}"
                ) from exc
        if db.url is not None:
            url = db.url.get_secret_value()
            if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
                relative = url.removeprefix("sqlite:///")
                if relative and relative != ":memory:":
                    return "sqlite:///" + str(self.resolve_path(Path(relative)))
            return url
        return "sqlite:///" + str(self.source.parent / "relaycert.db")


class _LocatedError(ValueError):
    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _at(loc: tuple[str | int, ...], message: str) -> _LocatedError:
    return _LocatedError(loc, message)


def _key(loc: tuple[str | int, ...], data: dict[str, Any]) -> str:
    """``('endpoints', 2, 'port')`` -> ``endpoints[2] (mail2).port``."""
    parts: list[str] = []
    node: Any = data
    for item in loc:
        if isinstance(item, int):
            name = None
            if isinstance(node, list) and item < len(node):
                node = node[item]
                name = node.get("name") if isinstance(node, dict) else None
            parts[-1] += f"[{item}]" + (f" ({name})" if isinstance(name, str) else "")
        else:
            parts.append(item)
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "(top level)"


def _describe(error: Any) -> str:
    kind, message = error["type"], error["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return "unknown key; check the spelling against docs/configuration.md"
    if kind == "missing":
        return "required key is missing"
    return str(message)


def parse(data: dict[str, Any], source: Path) -> Config:
    """Validate ``data`` (a parsed TOML document); raise :class:`ConfigError` on the first error."""
    try:
        return Config.model_validate({**data, "source": source})
    except ValidationError as exc:
        # An unknown key usually is a misspelt one, so report it before the "missing" it causes.
        first = min(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        context = first.get("ctx", {}).get("error")
        if isinstance(context, _LocatedError):
            loc, text = context.loc, str(context)
        else:
            loc, text = tuple(first["loc"]), _describe(first)
        raise ConfigError(f"{source}: {_key(loc, data)}: {text}") from None


def load(path: Path) -> Config:
    """Read and validate the TOML file at ``path``."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: file not found; copy config/relaycert.example.toml and edit it"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse(data, path)
