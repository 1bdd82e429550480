"""What the loaded configuration derives once: the store URL, each endpoint's expiry
thresholds and delivery contract (``Config`` keeps them as cached properties)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from checks.base import DeliveryContract, ExpiryThresholds
from monitor.config.delivery import DeliveryConnectorConfig
from monitor.config.sections import DatabaseConfig, EndpointConfig
from monitor.errors import ConfigError
from monitor.files import read_limited
from monitor.renewal.settings import RenewalSettings


def expiry_index(
    base: ExpiryThresholds, renewals: Sequence[RenewalSettings]
) -> dict[str, ExpiryThresholds]:
    """Endpoints whose certificate a ``[[renewals]]`` entry renews: the warning held back until
    that renewal is late."""
    return {
        name: dataclasses.replace(base, renew_fraction=renewal.renew_fraction)
        for renewal in renewals
        for name in renewal.endpoints
    }


def delivery_index(
    endpoints: Sequence[EndpointConfig], connectors: Sequence[DeliveryConnectorConfig]
) -> dict[str, DeliveryContract]:
    """Per endpoint, the first outbound connector whose smart hosts name its host or an address;
    the connector's other smart hosts that no endpoint probes are ``unmonitored``."""
    names = {e.name: {e.host.lower().rstrip("."), *(e.addresses or ())} for e in endpoints}
    probed: set[str] = set().union(*names.values()) if names else set()
    index: dict[str, DeliveryContract] = {}
    for connector in connectors:
        unmonitored = tuple(h for h in connector.smart_hosts if h not in probed)
        contract = connector.to_contract(unmonitored)
        for name, hosts in names.items():
            if name not in index and hosts & set(connector.smart_hosts):
                index[name] = contract
    return index


def database_url(db: DatabaseConfig, source: Path, resolve: Callable[[Path], Path]) -> str:
    """The store URL: from ``url``, ``url_env`` or ``url_file``; default a SQLite file beside
    the configuration; a relative SQLite path is relative to the configuration's folder."""
    if db.url_env is not None:
        value = os.environ.get(db.url_env)
        if not value:
            raise ConfigError(
                f"{source}: [database] url_env: environment variable {db.url_env} "
                "is not set; export it or use `url`"
            )
        return value
    if db.url_file is not None:
        path = resolve(db.url_file)
        try:
            return read_limited(path).decode("utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"{source}: [database] url_file: cannot read {path}: {exc.strerror}"
            ) from exc
    if db.url is not None:
        url = db.url.get_secret_value()
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            relative = url.removeprefix("sqlite:///")
            if relative and relative != ":memory:":
                return "sqlite:///" + str(resolve(Path(relative)))
        return url
    return "sqlite:///" + str(source.parent / "relaycert.db")
