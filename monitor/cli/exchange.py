"""``relaycert exchange``: judge the Exchange Server Send connectors toward Exchange Online from
their exports (``[exchange_server]``): does ``TlsCertificateName`` name exactly one installed,
valid certificate enabled for SMTP that satisfies the connector?  Exit codes as ``scan``."""

from __future__ import annotations

import argparse
import json
import sys

NAME = "exchange"
HELP = "check the Exchange Server Send connector's certificate from its exports"
NEEDS_CONFIG = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("text", "json"), default="text")


def run(args: argparse.Namespace) -> int:
    from checks.base import worst
    from monitor.config.loader import load
    from monitor.pipeline.exchange import judge_exports

    results = judge_exports(load(args.config))
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
