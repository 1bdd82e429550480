"""What every configuration section shares: the frozen model base, host and domain syntax, the
default EHLO name, ``address:port`` listen values."""

from __future__ import annotations

import re
import socket
from functools import lru_cache
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

LABEL = r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)"
HOST = re.compile(rf"^(?=.{{1,253}}$){LABEL}(\.{LABEL})*\.?$")
DOMAIN_PATTERN = re.compile(r"^(\*\.)?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+\.?$")


@lru_cache(maxsize=1)
def default_ehlo_name() -> str:
    """This host's fully qualified name (servers with a HELO-name check refuse made-up names
    such as ``relaycert.invalid``), or that when the host has no dotted name."""
    name = socket.getfqdn().rstrip(".").lower()
    if "." in name and HOST.match(name) and not name.startswith("localhost"):
        return name
    return "relaycert.invalid"


def escaped(value: str) -> str:
    """``value`` with each control (non-printable) character shown as ``\\xNN``."""
    if value.isprintable():
        return value
    return "".join(
        ch if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}"
        for ch in value
    )


def printable(value: str) -> str:
    """Names appear in tables, logs, alert titles and terminals: refuse control characters
    (an ESC in a name would reach every terminal that shows it)."""
    if not value.isprintable():
        raise ValueError(
            f"'{escaped(value)}' contains a control character; a name is shown in tables, "
            "logs and alerts: use printable text only"
        )
    return value


Name = Annotated[str, Field(min_length=1), AfterValidator(printable)]


def is_host_name(value: str) -> bool:
    return bool(HOST.match(value))


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


def listen_address(item: str) -> tuple[str, int]:
    """``"127.0.0.1:2525"`` or ``"[::1]:2525"`` -> (address, port)."""
    import ipaddress

    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, text = item.rpartition(":")
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"'{item}': give 'address:port' with a port from 1 to 65535")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"'{item}': '{host}' is not an IP address") from None
    return host, int(text)
