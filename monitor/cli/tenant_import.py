"""``relaycert import``: the TOML that the Exchange exports named in ``[tenant]`` (or given
here) amount to, for people who prefer a static configuration."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from monitor.config.tenant import Imported, read
from monitor.errors import ConfigError


def toml(found: Imported) -> str:
    lines = ["[tenant]", f"accepted_domains = {json.dumps(found.accepted_domains)}", ""]
    for connector in found.connectors:
        lines += [
            "[[connectors]]",
            f"name = {json.dumps(connector['name'])}",
            f"tls_sender_certificate_name = {json.dumps(connector['tls_sender_certificate_name'])}",
            "",
        ]
    for name, why in found.ignored:
        lines.append(f"# ignored connector {json.dumps(name)}: {why}")
    return "\n".join(lines).rstrip() + "\n"


def run(args: argparse.Namespace) -> int:
    if args.connectors is None and args.domains is None:
        raise ConfigError(
            "give --connectors FILE (Get-InboundConnector | ConvertTo-Json -Depth 5) and/or "
            "--domains FILE (Get-AcceptedDomain | ConvertTo-Json -Depth 5)"
        )
    found = read(Path.cwd() / "x", args.connectors, args.domains)
    sys.stdout.write(toml(found))
    return 0
