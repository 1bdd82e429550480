"""The tenant as Exchange Online describes it: JSON exported by Exchange Online PowerShell,

    Get-InboundConnector | ConvertTo-Json -Depth 5 > inbound-connectors.json
    Get-OutboundConnector | ConvertTo-Json -Depth 5 > outbound-connectors.json
    Get-AcceptedDomain -ResultSize Unlimited | ConvertTo-Json -Depth 5 > accepted-domains.json

(a single object or an array; field names as Exchange writes them).  Only enabled
``OnPremises`` inbound connectors with a ``TlsSenderCertificateName`` become connectors, and
only enabled ``OnPremises`` outbound connectors (to the organization) become delivery
connectors; every other one is reported as ignored, with the reason.
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
    delivery_connectors: list[dict[str, Any]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (name, why)


# Exchange's TlsAuthLevel, as Windows PowerShell 5.1 may write it (a number) or V3 (a name).
TLS_SETTINGS = {1: "EncryptionOnly", 2: "CertificateValidation", 4: "DomainValidation"}
MODES = ("Opportunistic", "Mandatory", "None")


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


def _onprem(item: dict[str, Any], other: str) -> tuple[str, str | None]:
    """The connector's name, and why it is not an enabled OnPremises connector (``None``: it
    is one); ``other`` ends the reason given for another ConnectorType."""
    name = str(item.get("Name") or item.get("Identity") or "(unnamed)")
    kind = item.get("ConnectorType")
    if not isinstance(kind, str):
        return name, (
            f"ConnectorType {kind!r} is not a name; export with Exchange Online PowerShell V3, "
            "which writes enums as strings"
        )
    if kind != "OnPremises":
        return name, f"a {kind} connector, {other}"
    if not _enabled(item.get("Enabled")):
        return name, "disabled"
    return name, None


def connectors(items: list[dict[str, Any]], into: Imported) -> None:
    for item in items:
        name, why = _onprem(item, "not OnPremises")
        pattern = item.get("TlsSenderCertificateName")
        if why is not None:
            into.ignored.append((name, why))
        elif not pattern:
            into.ignored.append((name, "no TlsSenderCertificateName (an IP-based connector)"))
        else:
            into.connectors.append({"name": name, "tls_sender_certificate_name": str(pattern)})


def _text(value: Any) -> str | None:
    """A host or domain as ConvertTo-Json writes it: a string, or an Exchange object
    (``SmartHost``: ``Address`` when ``IsIPAddress``, else ``Domain``; ``SmtpDomain``:
    ``Domain``, with ``IncludeSubDomains`` meaning ``*.``)."""
    if isinstance(value, str):
        return value.strip() or None
    if not isinstance(value, dict):
        return None
    if value.get("IsIPAddress") and isinstance(value.get("Address"), str):
        return str(value["Address"])
    inner = _text(value.get("Domain")) or _text(value.get("Address"))
    if inner and (value.get("IncludeSubDomains") or value.get("IsStar")):
        inner = inner if inner.startswith("*.") else f"*.{inner}"
    return inner


def _tls_settings(value: Any) -> tuple[str | None, str | None]:
    """(the TlsSettings name or ``None`` when not set, why it cannot be read)."""
    if value is None or value == "":
        return None, None
    if isinstance(value, int) and not isinstance(value, bool) and value in TLS_SETTINGS:
        return TLS_SETTINGS[value], None
    if isinstance(value, str) and value in TLS_SETTINGS.values():
        return value, None
    return None, f"TlsSettings {value!r} is none of {', '.join(TLS_SETTINGS.values())}"


def delivery_connectors(items: list[dict[str, Any]], into: Imported) -> None:
    """``Get-OutboundConnector``: the connectors Exchange Online delivers to this organization
    through (ConnectorType OnPremises), with what they check."""
    for item in items:
        name, why = _onprem(item, "not one to this organization")
        tls, unreadable = _tls_settings(item.get("TlsSettings"))
        smart_hosts = [h for h in map(_text, item.get("SmartHosts") or []) if h]
        use_mx = _enabled(item.get("UseMXRecord"))
        if why is not None:
            into.ignored.append((name, why))
        elif unreadable is not None:
            into.ignored.append((name, unreadable))
        elif not smart_hosts and not use_mx:
            into.ignored.append((name, "no SmartHosts and UseMXRecord is false"))
        else:
            entry: dict[str, Any] = {
                "name": name,
                "smart_hosts": smart_hosts,
                "use_mx_record": use_mx,
                "recipient_domains": [
                    d for d in map(_text, item.get("RecipientDomains") or []) if d
                ],
            }
            if tls is not None:
                entry["tls_settings"] = tls
            domain = _text(item.get("TlsDomain"))
            if domain is not None:
                entry["tls_domain"] = domain
            for key, field_name in (("SmtpDaneMode", "dane_mode"), ("MtaStsMode", "mta_sts_mode")):
                mode = item.get(key)
                if isinstance(mode, str) and mode in MODES:
                    entry[field_name] = mode
            into.delivery_connectors.append(entry)


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


def read(
    source: Path,
    connectors_file: Path | None,
    domains_file: Path | None,
    outbound_file: Path | None = None,
) -> Imported:
    """What the files say; paths relative to the configuration file ``source``."""
    found = Imported()
    base = source.parent
    if outbound_file is not None:
        path = outbound_file if outbound_file.is_absolute() else base / outbound_file
        delivery_connectors(records(path, "outbound_connectors_file"), found)
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
    outbound_file = tenant.get("outbound_connectors_file")
    if connectors_file is None and domains_file is None and outbound_file is None:
        return data, None
    found = read(
        source,
        Path(connectors_file) if isinstance(connectors_file, str) else None,
        Path(domains_file) if isinstance(domains_file, str) else None,
        Path(outbound_file) if isinstance(outbound_file, str) else None,
    )
    listed = list(tenant.get("accepted_domains") or [])
    domains = listed + [d for d in found.accepted_domains if d not in listed]
    written = list(data.get("connectors") or [])
    names = {c.get("name") for c in written if isinstance(c, dict)}
    added = [c for c in found.connectors if c["name"] not in names]
    delivery = list(data.get("delivery_connectors") or [])
    written_delivery = {c.get("name") for c in delivery if isinstance(c, dict)}
    delivery += [c for c in found.delivery_connectors if c["name"] not in written_delivery]
    merged = {
        **data,
        "tenant": {**tenant, "accepted_domains": domains},
        "connectors": written + added,
    }
    if delivery:
        merged["delivery_connectors"] = delivery
    return merged, found
