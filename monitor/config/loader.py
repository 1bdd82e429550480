"""The configuration file, parsed once into frozen, typed models.

Units are converted at the edge (``"10s"``, ``"90d"`` become :class:`~datetime.timedelta`), every
cross-field rule lives in :meth:`Config._cross_check`, and every error names the file, the key
and what to do (:func:`load`).  Secrets are never written in the file: ``*_env`` and ``*_file``
keys name where to read them.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

try:  # the compiled parser (~4x faster on a 20 000-endpoint file); the standard one otherwise
    import tomli as tomllib
except ImportError:  # pragma: no cover - tomli is a dependency
    import tomllib  # type: ignore[no-redef]

from pydantic import BaseModel, Field, ValidationError, model_validator

from checks.base import DeliveryContract, ExpiryThresholds, Severity
from monitor.alerts.policy import Tracking
from monitor.alerts.settings import AlertsConfig
from monitor.config import derived
from monitor.config.common import Model as _Model
from monitor.config.integrations import CaptureConfig, ExchangeServerConfig, RevocationConfig
from monitor.config.located import LocatedError, at, describe, key_of, unique
from monitor.config.sections import (
    ConnectorConfig,
    DaemonConfig,
    DatabaseConfig,
    DeliveryConnectorConfig,
    DnsConfig,
    EndpointConfig,
    ExpiryConfig,
    InstanceConfig,
    ProbeConfig,
    ReportsConfig,
    TenantConfig,
    TrustConfig,
)
from monitor.config.units import parse_duration
from monitor.errors import ConfigError
from monitor.files import read_limited
from monitor.observed.settings import ObservedSettings
from monitor.renewal.settings import RenewalSettings
from notifications.settings import AnyChannelSettings

__all__ = ["Config", "EndpointConfig", "load", "parse", "parse_duration"]

ModelT = TypeVar("ModelT", bound=BaseModel)


class Config(_Model):
    """The whole configuration file.  ``source`` is the file it came from."""

    tenant: TenantConfig
    connectors: tuple[ConnectorConfig, ...] = ()
    delivery_connectors: tuple[DeliveryConnectorConfig, ...] = ()
    endpoints: tuple[EndpointConfig, ...] = Field(min_length=1)
    trust: TrustConfig = TrustConfig()
    expiry: ExpiryConfig = ExpiryConfig()
    probe: ProbeConfig = ProbeConfig()
    dns: DnsConfig = DnsConfig()
    database: DatabaseConfig = DatabaseConfig()
    daemon: DaemonConfig = DaemonConfig()
    instance: InstanceConfig = InstanceConfig()
    alerts: AlertsConfig = AlertsConfig()
    reports: ReportsConfig = ReportsConfig()
    capture: CaptureConfig | None = None
    revocation: RevocationConfig = RevocationConfig()
    observed: ObservedSettings = ObservedSettings()
    exchange_server: ExchangeServerConfig | None = None
    renewals: tuple[RenewalSettings, ...] = ()
    channels: tuple[AnyChannelSettings, ...] = ()
    source: Path = Field(default=Path("relaycert.toml"), exclude=True)

    @model_validator(mode="after")
    def _cross_check(self) -> Config:
        for section in ("connectors", "delivery_connectors", "endpoints", "channels", "renewals"):
            unique(section, [item.name for item in getattr(self, section)])
        connectors = {c.name for c in self.connectors}
        endpoints = {e.name for e in self.endpoints}
        for index, endpoint in enumerate(self.endpoints):
            if endpoint.connector is not None and endpoint.connector not in connectors:
                known = ", ".join(sorted(connectors)) or "none defined"
                raise at(
                    ("endpoints", index, "connector"),
                    f"unknown connector '{endpoint.connector}' (known: {known})",
                )
            if endpoint.interval is not None and endpoint.interval < timedelta(seconds=10):
                raise at(("endpoints", index, "interval"), "must be at least 10s")
            if endpoint.mode == "starttls" and endpoint.port == 465:
                raise at(
                    ("endpoints", index, "mode"),
                    "port 465 is implicit TLS; use mode = 'tls' or 'auto'",
                )
            if endpoint.outbound is not None:
                self._check_outbound(index, endpoint)
        for index, channel in enumerate(self.channels):
            for name in channel.connectors:
                if name not in connectors:
                    raise at(("channels", index, "connectors"), f"unknown connector '{name}'")
            for severity in channel.severities:
                if severity not in {s.value for s in Severity}:
                    raise at(
                        ("channels", index, "severities"),
                        f"'{severity}' is not one of info, warning, unknown, critical",
                    )
        for index, renewal in enumerate(self.renewals):
            for name in renewal.endpoints:
                if name not in endpoints:
                    raise at(("renewals", index, "endpoints"), f"unknown endpoint '{name}'")
        exchange = self.exchange_server
        if exchange is not None and exchange.connector not in (None, *connectors):
            raise at(("exchange_server", "connector"), f"unknown connector '{exchange.connector}'")
        mail = self.reports.email_channel
        if mail is not None and not any(
            c.name == mail and c.type == "email" for c in self.channels
        ):
            raise at(("reports", "email_channel"), f"'{mail}' is not an e-mail channel")
        return self

    def _check_outbound(self, index: int, endpoint: EndpointConfig) -> None:
        loc = ("endpoints", index, "outbound")
        if self.capture is None:
            raise at(loc, "an outbound check needs a [capture] section (the listener it waits at)")
        domain = self.probe_domain(endpoint)
        if domain not in self.capture.probe_domains:
            raise at(
                (*loc, "probe_domain"),
                f"'{domain}' is not one of [capture] probe_domains "
                f"({', '.join(self.capture.probe_domains)})",
            )

    def probe_domain(self, endpoint: EndpointConfig) -> str:
        """The domain an endpoint's outbound probe messages are addressed to."""
        assert endpoint.outbound is not None and self.capture is not None
        chosen = endpoint.outbound.probe_domain
        return chosen.lower().rstrip(".") if chosen else self.capture.probe_domains[0]

    def tenant_files(self) -> list[Path]:
        """The Exchange exports the configuration reads (the daemon watches them)."""
        tenant = self.tenant
        files = (
            tenant.accepted_domains_file,
            tenant.inbound_connectors_file,
            tenant.outbound_connectors_file,
        )
        return [self.resolve_path(f) for f in files if f is not None]

    def endpoint(self, name: str) -> EndpointConfig | None:
        return next((e for e in self.endpoints if e.name == name), None)

    def endpoint_interval(self, endpoint: EndpointConfig) -> timedelta:
        return endpoint.interval or self.daemon.interval

    def channel_where(self, index: int) -> str:
        return f"{self.source}: channels[{index}] ({self.channels[index].name})"

    def renewal_where(self, index: int) -> str:
        return f"{self.source}: renewals[{index}] ({self.renewals[index].name})"

    def expiry_for(self, endpoint: str) -> ExpiryThresholds:
        """``cert.expiring``'s thresholds for ``endpoint``: ``[expiry]``, with the warning held
        back until renewal is late when a ``[[renewals]]`` entry renews its certificate."""
        return self._expiry_index.get(endpoint) or self.expiry.to_check()

    @cached_property
    def _expiry_index(self) -> dict[str, ExpiryThresholds]:
        return derived.expiry_index(self.expiry.to_check(), self.renewals)

    def delivery_for(self, endpoint: EndpointConfig) -> DeliveryContract | None:
        """The delivery contract of ``endpoint``: the first outbound connector to the
        organization whose smart hosts name its host or one of its addresses (``None``: none
        does, the contract is unknown).  Its other smart hosts that no endpoint probes are
        ``unmonitored``."""
        return self._delivery_index.get(endpoint.name)

    @cached_property
    def _delivery_index(self) -> dict[str, DeliveryContract]:
        return derived.delivery_index(self.endpoints, self.delivery_connectors)

    @cached_property
    def tracking(self) -> Tracking:
        """The daemon's routing table, derived once: how a scan's results feed baselines and
        alerts, and which channel each message goes to."""
        return Tracking(
            auto_accept=self.daemon.auto_accept_renewals,
            alerts=self.alerts.settings(),
            channels=tuple(self.channels),
            docs_url=self.alerts.docs_url,
        )

    def connector(self, name: str | None) -> ConnectorConfig | None:
        return next((c for c in self.connectors if c.name == name), None)

    def endpoint_timeout(self, endpoint: EndpointConfig) -> timedelta:
        return endpoint.timeout or self.probe.timeout

    def resolved(self, model: ModelT) -> ModelT:
        """``model`` with every relative path in it (nested models too) made relative to the
        configuration file's folder, as the documentation promises for every path key."""
        updates: dict[str, Any] = {}
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, Path):
                updates[name] = self.resolve_path(value)
            elif isinstance(value, tuple) and value and all(isinstance(v, Path) for v in value):
                updates[name] = tuple(self.resolve_path(v) for v in value)
            elif isinstance(value, BaseModel):
                updates[name] = self.resolved(value)
        return model.model_copy(update=updates) if updates else model

    def resolve_path(self, path: Path) -> Path:
        """Relative paths in the file are relative to the file's folder."""
        return path if path.is_absolute() else (self.source.parent / path)

    def database_url(self) -> str:
        """The store URL: from ``url``, ``url_env`` or ``url_file``; default a SQLite file."""
        return derived.database_url(self.database, self.source, self.resolve_path)


def parse(data: dict[str, Any], source: Path) -> Config:
    """Validate ``data`` (a parsed TOML document); raise :class:`ConfigError` on the first error."""
    from monitor.config.tenant import merge

    try:
        data, _ = merge(data, source)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    try:
        return Config.model_validate({**data, "source": source})
    except ValidationError as exc:
        # An unknown key usually is a misspelt one, so report it before the "missing" it causes.
        first = min(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        context = first.get("ctx", {}).get("error")
        if isinstance(context, LocatedError):
            loc, text = context.loc, str(context)
        else:
            loc, text = tuple(first["loc"]), describe(first)
        raise ConfigError(f"{source}: {key_of(loc, data)}: {text}") from None


def load(path: Path) -> Config:
    """Read and validate the TOML file at ``path``."""
    try:
        raw = read_limited(path)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: file not found; copy config/relaycert.example.toml (relaycert init) "
            "and edit it, or give --config / set RELAYCERT_CONFIG"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: arrays or tables nested too deeply; check the file") from None
    try:
        return parse(data, path)
    except RecursionError:
        raise ConfigError(f"{path}: values nested too deeply; check the file") from None
