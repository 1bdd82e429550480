"""``relaycert import``: the TOML that the Exchange exports named in ``[tenant]`` (or given
here) amount to, for people who prefer a static configuration."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from monitor.config.tenant import Imported

NAME = "import"
HELP = "print the TOML that Exchange Online exports (connectors, domains) give"
NEEDS_CONFIG = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--connectors", type=Path, metavar="FILE", help="Get-InboundConnector | ConvertTo-Json"
    )
    parser.add_argument(
        "--outbound", type=Path, metavar="FILE", help="Get-OutboundConnector | ConvertTo-Json"
    )
    parser.add_argument(
        "--domains", type=Path, metavar="FILE", help="Get-AcceptedDomain | ConvertTo-Json"
    )


def _check(found: Imported, source: str) -> None:
    """Refuse what the configuration loader would refuse later: duplicate connector names,
    names or values that make no valid connector."""
    from pydantic import ValidationError

    from monitor.config.sections import ConnectorConfig, DeliveryConnectorConfig

    sections: tuple[tuple[str, list[dict[str, Any]], type[BaseModel]], ...] = (
        ("connector", list(found.connectors), ConnectorConfig),
        ("outbound connector", found.delivery_connectors, DeliveryConnectorConfig),
    )
    for what, items, model in sections:
        seen: set[str] = set()
        for item in items:
            name = item["name"]
            where = f"{source}: {what} {json.dumps(name)}"
            if name in seen:
                raise ConfigError(f"{where}: duplicate {what} name; rename one in Exchange Online")
            seen.add(name)
            try:
                model.model_validate(item)
            except ValidationError as exc:
                why = "; ".join(str(e["msg"]) for e in exc.errors())
                raise ConfigError(f"{where}: {json.dumps(why)}") from None


def _comment(text: str) -> str:
    """``text`` on one line with every control character (and non-ASCII) escaped."""
    return json.dumps(text)[1:-1]


def toml(found: Imported, source: str = "the export") -> str:
    """The sections, each written by a TOML writer (the export's text is data, never syntax),
    then read back to prove it; the ignored connectors as one-line comments with every control
    character escaped."""
    import tomllib

    import tomli_w

    _check(found, source)
    parts = [tomli_w.dumps({"tenant": {"accepted_domains": list(found.accepted_domains)}})]
    parts += ["[[connectors]]\n" + tomli_w.dumps(dict(c)) for c in found.connectors]
    parts += [
        "[[delivery_connectors]]\n" + tomli_w.dumps(dict(c)) for c in found.delivery_connectors
    ]
    text = "\n".join(parts)
    expected: dict[str, Any] = {"tenant": {"accepted_domains": list(found.accepted_domains)}}
    if found.connectors:
        expected["connectors"] = [dict(c) for c in found.connectors]
    if found.delivery_connectors:
        expected["delivery_connectors"] = [dict(c) for c in found.delivery_connectors]
    if tomllib.loads(text) != expected:  # a writer's bug must not become a configuration
        raise ConfigError(f"{source}: the TOML written does not read back; please report it")
    notes = [
        f"# ignored connector {json.dumps(name)}: {_comment(why)}" for name, why in found.ignored
    ]
    return text + ("\n" if notes else "") + "".join(f"{line}\n" for line in notes)


def run(args: argparse.Namespace) -> int:
    if args.connectors is None and args.domains is None and args.outbound is None:
        raise ConfigError(
            "give --connectors FILE (Get-InboundConnector | ConvertTo-Json -Depth 5), "
            "--outbound FILE (Get-OutboundConnector | ConvertTo-Json -Depth 5) and/or "
            "--domains FILE (Get-AcceptedDomain | ConvertTo-Json -Depth 5)"
        )
    from monitor.config.tenant import read

    found = read(Path.cwd() / "x", args.connectors, args.domains, args.outbound)
    files = (args.connectors, args.outbound, args.domains)
    source = " and ".join(str(p) for p in files if p is not None)
    sys.stdout.write(toml(found, source))
    return 0
