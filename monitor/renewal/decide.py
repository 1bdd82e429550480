"""Whether a renewal is due: urgent when the served certificate fails a rule renewal fixes,
otherwise the CA's renewal window (ARI) or a share of the lifetime; and how long to wait after
failures (backoff)."""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography.hazmat.primitives.serialization import Encoding

from checks.base import Policy, TrustAnchors
from monitor.config.loader import Config
from monitor.renewal.acme_flow import AcmeSession
from monitor.renewal.outcome import FAILED_RESULTS
from monitor.renewal.settings import RenewalSettings
from monitor.store.queries import RenewalStatus, Served

URGENT_RULES = frozenset({"cert.expired", "cert.untrusted", "connector.name_not_covered"})


def backoff(history: list[RenewalStatus]) -> datetime | None:
    """After consecutive failures (``history`` newest first), the earliest next attempt:
    10 minutes, doubling, at most 12 hours."""
    failures = 0
    for attempt in history:
        if attempt.outcome not in FAILED_RESULTS:
            break
        failures += 1
    if not failures or history[0].finished_at is None:
        return None
    wait = min(timedelta(minutes=10) * (1 << (failures - 1)), timedelta(hours=12))
    return history[0].finished_at + wait


def due(
    session: AcmeSession, current: Served, settings: RenewalSettings, now: datetime
) -> tuple[str | None, datetime | None]:
    """Why to renew now (``None`` when not due), and when the CA wants to be asked again."""
    if current.urgent:
        return "the served certificate fails " + ", ".join(current.urgent), None
    leaf = current.leaf
    if leaf is None:
        return "no certificate is served yet", None
    when, next_check = session.renewal_time(leaf.public_bytes(Encoding.PEM))
    if when is not None:
        reason = f"inside the CA's renewal window (ARI, from {when:%Y-%m-%d %H:%M} UTC)"
        return (reason if now >= when else None), next_check
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    renew_at = leaf.not_valid_after_utc - lifetime * settings.renew_fraction
    share = f"less than {settings.renew_fraction:.0%} of the lifetime left"
    return (share if now >= renew_at else None), None


def policies(
    config: Config, settings: RenewalSettings, now: datetime, anchors: TrustAnchors
) -> list[Policy]:
    """The policies of the connectors the renewal's endpoints serve (for the gate)."""
    connectors = {e.connector for e in config.endpoints if e.name in settings.endpoints}
    found = []
    for name in connectors:
        connector = config.connector(name) if name else None
        found.append(
            Policy(
                now,
                config.tenant.accepted_domains,
                connector.to_check() if connector else None,
                config.expiry.to_check(),
                anchors,
            )
        )
    return found
