"""An issued certificate that is not deployed and verified yet, kept (key mode 0600) so a
failed deployment, hook or verification is retried with the *same* certificate: a public CA
allows only a few duplicate orders a week, and a retry must not spend them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509

from checks.certinfo import dns_sans
from monitor.files import read_limited, write_atomic, write_secret
from monitor.renewal.acme_flow import Issued

KEY, CHAIN, META = "pending-key.pem", "pending-fullchain.pem", "pending.json"


def save(folder: Path, issued: Issued) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_secret(folder / KEY, issued.key_pem)
    write_atomic(folder / CHAIN, issued.fullchain_pem.encode())
    write_atomic(folder / META, json.dumps({"order_url": issued.order_url}).encode())


def load(folder: Path) -> Issued | None:
    try:
        key = read_limited(folder / KEY)
        chain = read_limited(folder / CHAIN).decode()
        meta = json.loads(read_limited(folder / META))
    except (OSError, ValueError):
        return None
    return Issued(chain, key, meta.get("order_url"))


def clear(folder: Path) -> None:
    for name in (KEY, CHAIN, META):
        (folder / name).unlink(missing_ok=True)


def unusable(
    issued: Issued, names: list[str], now: datetime, min_lifetime: timedelta
) -> str | None:
    """Why the kept certificate cannot be deployed (``None``: it can)."""
    try:
        leaf = x509.load_pem_x509_certificates(issued.fullchain_pem.encode())[0]
    except (ValueError, IndexError):
        return "it is damaged"
    if sorted(n.lower() for n in dns_sans(leaf)) != sorted(n.lower() for n in names):
        return "it was issued for other names"
    if leaf.not_valid_after_utc - now < min_lifetime:
        return "it expires too soon"
    return None
