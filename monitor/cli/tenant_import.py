"""``relaycert import``: the TOML that the Exchange exports named in ``[tenant]`` (or given
here) amount to, for people who prefer a static configuration."""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import ValidationError

from monitor.config.sections import ConnectorConfig
from monitor.config.tenant import Imported, read
from monitor.errors import ConfigError


def _check(found: Imported, source: str) -> None:
    """Refuse what the configuration loader would refuse later: duplicate connector names,
    names or patterns that are no valid connector."""
    seen: set[str] = set()
    for connector in found.connectors:
        name = connector["name"]
        where = f"{source}: connector {json.dumps(name)}"
        if name in seen:
            raise ConfigError(f"{where}: duplicate connector name; rename one in Exchange Online")
        seen.add(name)
        try:
            ConnectorConfig.model_validate(connector)
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
    _check(found, source)
    parts = [tomli_w.dumps({"tenant": {"accepted_domains": list(found.accepted_domains)}})]
    parts += ["[[connectors]]\n" + tomli_w.dumps(dict(c)) for c in found.connectors]
    text = "\n".join(parts)
    expected: dict[str, Any] = {"tenant": {"accepted_domains": list(found.accepted_domains)}}
    if found.connectors:
        expected["connectors"] = [dict(c) for c in found.connectors]
    if tomllib.loads(text) != expected:  # a writer's bug must not become a configuration
        raise ConfigError(f"{source}: the TOML written does not read back; please report it")
    notes = [
        f"# ignored connector {json.dumps(name)}: {_comment(why)}" for name, why in found.ignored
    ]
    return text + ("\n" if notes else "") + "".join(f"{line}\n" for line in notes)


def run(args: argparse.Namespace) -> int:
    if args.connectors is None and args.domains is None:
        raise ConfigError(
            "give --connectors FILE (Get-InboundConnector | ConvertTo-Json -Depth 5) and/or "
            "--domains FILE (Get-AcceptedDomain | ConvertTo-Json -Depth 5)"
        )
    found = read(Path.cwd() / "x", args.connectors, args.domains)
    source = " and ".join(str(p) for p in (args.connectors, args.domains) if p is not None)
    sys.stdout.write(toml(found, source))
    return 0
