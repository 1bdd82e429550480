"""The Exchange Server Send connector check over ``[exchange_server]``'s exports: used by
``relaycert exchange`` and, after a deployment, by renewal (is the Send connector now naming the
renewed certificate?)."""

from __future__ import annotations

from datetime import datetime

from checks import exchange
from checks.base import Finding
from monitor.clock import utcnow
from monitor.config.loader import Config
from monitor.config.tenant import records
from monitor.errors import ConfigError


def judge_exports(
    config: Config, now: datetime | None = None
) -> list[tuple[exchange.SendConnector, list[Finding]]]:
    """The Send connectors toward Exchange Online in ``[exchange_server]``'s exports, judged
    at ``now`` (default: the system clock's)."""
    settings = config.exchange_server
    if settings is None:
        raise ConfigError(
            f"{config.source}: no [exchange_server] section; name the exports of "
            "Get-SendConnector and Get-ExchangeCertificate there (docs/configuration.md)"
        )
    sends = [
        exchange.send_connector(r)
        for r in records(config.resolve_path(settings.send_connectors_file), "send_connectors_file")
    ]
    certs = [
        exchange.certificate(r)
        for r in records(config.resolve_path(settings.certificates_file), "certificates_file")
    ]
    chosen = [
        s
        for s in sends
        if s.enabled
        and (
            s.name in settings.send_connectors
            if settings.send_connectors
            else exchange.toward_exchange_online(s)
        )
    ]
    if not chosen:
        raise ConfigError(
            f"{config.source}: exchange_server: no enabled Send connector toward Exchange Online "
            "(smart host *.mail.protection.outlook.com) in the export; name them in send_connectors"
        )
    name = settings.connector or (
        config.connectors[0].name if len(config.connectors) == 1 else None
    )
    relay = config.connector(name)
    now = now or utcnow()
    return [
        (
            send,
            exchange.judge(
                send,
                certs,
                relay.to_check() if relay else None,
                config.tenant.accepted_domains,
                now,
            ),
        )
        for send in chosen
    ]
