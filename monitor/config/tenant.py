"""The tenant as Exchange Online describes it: JSON exported by Exchange Online PowerShell,

    Get-InboundConnector | ConvertTo-Json -Depth 5 > inbound-connectors.json
    Get-AcceptedDomain -ResultSize Unlimited | ConvertTo-Json -Depth 5 > accepted-domains.json

(a single object or an array; field names as Exchange writes them).  Only enabled
``OnPremises`` connectors with a ``TlsSenderCertificateName`` become connectors; every other one
is reported as ignored, with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.errors import ConfigError
from monitor.files import read_limited


@dataclass
class Imported:
    accepted_domains: list[str] = field(default_factory=list)
    connectors: list[dict[str, str]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (name, why)


def records(path: Path, what: str) -> list[dict[str, Any]]:
    """The objects of a ConvertTo-Json export (Windows PowerShell writes a BOM sometimes)."""
    try:
        data = json.loads(read_limited(path).decode("utf-8-sig"))
    except OSError as exc:
        raise ConfigError(f"tenant.{what}: cannot read {path}: {exc.strerror}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"tenant.{what}: {path} is not JSON from ConvertTo-Json: {exc}") from None
    except RecursionError:
        raise ConfigError(
            f"tenant.{what}: {path} is nested too deeply to be an export of ConvertTo-Json; "
            "export again with -Depth 5"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("value"), list):  # Graph's collection
        data = data["value"]
    items = data if isinstance(data, list) else [data]
    if not all(isinstance(item, dict) for item in items):
        raise ConfigError(f"tenant.{what}: {path} must hold an object or an array of objects")
    return items


def _enabled(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def connectors(items: list[dict[str, Any]], into: Imported) -> None:
    for item in items:
        name = str(item.get("Name") or item.get("Identity") or "(unnamed)")
        kind = item.get("ConnectorType")
        pattern = item.get("TlsSenderCertificateName")
        if not isinstance(kind, str):
            into.ignored.append(
                (
                    name,
                    f"ConnectorType {kind!r} is not a name; export with Exchange Online "
                    "PowerShell V3, which writes enums as strings",
                )
            )
        elif kind != "OnPremises":
            into.ignored.append((name, f"a {kind} connector, not OnPremises"))
        elif not _enabled(item.get("Enabled")):
            into.ignored.append((name, "disabled"))
        elif not pattern:
            into.ignored.append((name, "no TlsSenderCertificateName (an IP-based connector)"))
        else:
            into.connectors.append({"name": name, "tls_sender_certificate_name": str(pattern)})


def accepted_domains(items: list[dict[str, Any]], into: Imported) -> None:
    for item in items:
        domain = item.get("DomainName") or item.get("id")  # Exchange, or Microsoft Graph
        if "isVerified" in item and not item.get("isVerified"):
            continue  # Graph: a domain the tenant has not verified is not accepted
        services = item.get("supportedServices")
        if isinstance(services, list) and "Email" not in services:
            continue  # Graph: not used for mail
        if isinstance(domain, str) and domain and domain not in into.accepted_domains:
            into.accepted_domains.append(domain.lower())


def read(source: Path, connectors_file: Path | None, domains_file: Path | None) -> Imported:
    """What the files say; paths relative to the configuration file ``source``."""
    found = Imported()
    base = source.parent
    if domains_file is not None:
        path = domains_file if domains_file.is_absolute() else base / domains_file
        accepted_domains(records(path, "accepted_domains_file"), found)
    if connectors_file is not None:
        path = connectors_file if connectors_file.is_absolute() else base / connectors_file
        connectors(records(path, "inbound_connectors_file"), found)
    return found


def merge(data: dict[str, Any], source: Path) -> tuple[dict[str, Any], Imported | None]:
    """``data`` (a parsed configuration) with the imported accepted domains and connectors
    added; connectors written in the file itself win over imported ones of the same name."""
    tenant = data.get("tenant")
    if not isinstance(tenant, dict):
        return data, None
    connectors_file = tenant.get("inbound_connectors_file")
    domains_file = tenant.get("accepted_domains_file")
    if connectors_file is None and domains_file is None:
        return data, None
    found = read(
        source,
        Path(connectors_file) if isinstance(connectors_file, str) else None,
        Path(domains_file) if isinstance(domains_file, str) else None,
    )
    listed = list(tenant.get("accepted_domains") or [])
    domains = listed + [d for d in found.accepted_domains if d not in listed]
    written = list(data.get("connectors") or [])
    names = {c.get("name") for c in written if isinstance(c, dict)}
    added = [c for c in found.connectors if c["name"] not in names]
    merged = {
        **data,
        "tenant": {**tenant, "accepted_domains": domains},
        "connectors": written + added,
    }
    return merged, found
