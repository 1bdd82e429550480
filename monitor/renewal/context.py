"""What a renewal reads from the configuration, read once where a renewal starts.

:class:`RenewalContext` is built from the whole :class:`~monitor.config.loader.Config` by
:func:`build` (``renew()`` in :mod:`.runner`, ``relaycert renew --next-key``) and is all the
renewal's steps see of it, with the injected clock; its messages (:mod:`.notify`) go to the
channels it holds.  One part of the configuration is read by code outside renewal that takes
the whole configuration, the Exchange Send connector check over the exports
(:mod:`monitor.pipeline.exchange`): the context holds it bound, as a callable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from checks.base import Connector, ExpiryThresholds, Finding
from checks.exchange import SendConnector
from monitor.clock import Clock, utcnow
from monitor.renewal.settings import RenewalSettings
from notifications.settings import ChannelSettings

if TYPE_CHECKING:
    from monitor.config.loader import Config
    from monitor.config.sections import EndpointConfig

# The Send connectors of [exchange_server]'s exports, judged (may raise RelaycertError).
SendConnectorCheck = Callable[[], list[tuple[SendConnector, list[Finding]]]]


@dataclass(frozen=True)
class RenewalContext:
    """What one renewal works with from the configuration (see :func:`build`)."""

    settings: RenewalSettings  # paths resolved against the configuration file
    where: str  # the settings' place in the configuration, for messages
    endpoints: tuple[EndpointConfig, ...]  # the renewal's endpoints, in configuration order
    # For the gate's policies: the tenant's accepted domains, the connectors the endpoints
    # relay through (None: an endpoint without one) and [expiry].
    accepted_domains: tuple[str, ...]
    connectors: tuple[Connector | None, ...]
    expiry: ExpiryThresholds
    # The DANE gate: the endpoints' hosts Exchange Online delivers to with DANE, how long a
    # TLSA lookup may take ([probe] timeout, seconds) and where ([dns] nameservers).
    dane_hosts: tuple[str, ...]
    lookup_timeout: float
    nameservers: tuple[tuple[str, int], ...]
    send_connectors: SendConnectorCheck | None  # None: no [exchange_server]
    channels: tuple[ChannelSettings, ...]  # where its messages go (monitor.renewal.notify)
    clock: Clock


def build(config: Config, settings: RenewalSettings, clock: Clock = utcnow) -> RenewalContext:
    """The context of ``settings``, one of ``config.renewals``."""
    where = config.renewal_where(config.renewals.index(settings))
    resolved = config.resolved(settings)  # relative paths are relative to the config file
    endpoints = tuple(e for e in config.endpoints if e.name in resolved.endpoints)
    names = {e.connector for e in endpoints}
    connectors = []
    for name in names:
        connector = config.connector(name) if name else None
        connectors.append(connector.to_check() if connector else None)
    return RenewalContext(
        settings=resolved,
        where=where,
        endpoints=endpoints,
        accepted_domains=config.tenant.accepted_domains,
        connectors=tuple(connectors),
        expiry=config.expiry.to_check(),
        dane_hosts=_dane_hosts(config, resolved),
        lookup_timeout=config.probe.timeout.total_seconds(),
        nameservers=config.dns.servers(),
        send_connectors=send_connector_check(config, clock),
        channels=tuple(config.channels),
        clock=clock,
    )


def send_connector_check(config: Config, clock: Clock = utcnow) -> SendConnectorCheck | None:
    """The Send connector check over ``[exchange_server]``'s exports, or ``None`` without one."""
    if config.exchange_server is None:
        return None
    from monitor.pipeline.exchange import judge_exports

    return lambda: judge_exports(config, clock())


def _dane_hosts(config: Config, settings: RenewalSettings) -> tuple[str, ...]:
    """The hosts of the renewal's endpoints that Exchange Online delivers to with DANE."""
    hosts = set()
    for name in settings.endpoints:
        endpoint = config.endpoint(name)
        if endpoint is None:
            continue
        contract = config.delivery_for(endpoint)
        if contract is not None and contract.dane_mode != "None":
            hosts.add(endpoint.host.lower().rstrip("."))
    return tuple(sorted(hosts))
