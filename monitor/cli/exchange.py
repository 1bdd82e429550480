"""``relaycert exchange``: judge the Exchange Server Send connectors toward Exchange Online from
their exports (``[exchange_server]``): does ``TlsCertificateName`` name exactly one installed,
valid certificate enabled for SMTP that satisfies the connector?  Exit codes as ``scan``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from checks import exchange
from checks.base import worst
from monitor.config.loader import load
from monitor.config.tenant import records
from monitor.errors import ConfigError


def run(args: argparse.Namespace) -> int:
    config = load(args.config)
    settings = config.exchange_server
    if settings is None:
        raise ConfigError(
            f"{args.config}: no [exchange_server] section; name the exports of "
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
            f"{args.config}: exchange_server: no enabled Send connector toward Exchange Online "
            "(smart host *.mail.protection.outlook.com) in the export; name them in send_connectors"
        )
    name = settings.connector or (
        config.connectors[0].name if len(config.connectors) == 1 else None
    )
    relay = config.connector(name)
    now = datetime.now(UTC)
    results = [
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
    severity = worst(f.severity for _, found in results for f in found)
    code = severity.exit_code if severity else 0
    if args.format == "json":
        doc = [
            {
                "send_connector": send.name,
                "tls_certificate_name": send.tls_certificate_name,
                "findings": [
                    {"rule": f.rule, "severity": f.severity.value, "message": f.message}
                    for f in found
                ],
            }
            for send, found in results
        ]
        sys.stdout.write(json.dumps({"exit_code": code, "send_connectors": doc}, indent=2) + "\n")
    else:
        for send, found in results:
            named = send.tls_certificate_name or "(no TlsCertificateName)"
            print(f"Send connector {send.name}: {named}")
            for f in found or []:
                print(f"  {f.severity.value.upper()} {f.rule}: {f.message}")
            if not found:
                print("  ok: one valid certificate enabled for SMTP, covering the connector")
    return code
