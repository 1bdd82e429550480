"""Whether a renewal is due: urgent when the served certificate fails a rule renewal fixes,
otherwise the CA's renewal window (ARI) or a share of the lifetime; and how long to wait after
failures (backoff)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.serialization import Encoding

from checks.base import Policy, TrustAnchors
from checks.matching import base_domain, connector_match, registered_domain
from monitor.errors import RenewalError
from monitor.renewal.acme_flow import AcmeSession
from monitor.renewal.context import RenewalContext
from monitor.renewal.outcome import FAILED_RESULTS
from monitor.renewal.settings import RenewalSettings
from monitor.store.reads.renewal import RenewalStatus, Served

URGENT_RULES = frozenset(
    {"cert.expired", "cert.untrusted", "connector.name_not_covered", "cert.revoked"}
)
# The CA's window this much earlier than the lifetime-based plan, and before half the lifetime:
# the CA asks (a revocation event, RFC 9773), and the renewal says so.
EARLY = timedelta(days=1)


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


@dataclass(frozen=True)
class Due:
    """Whether to renew now (``reason``), when it will be due otherwise, when the CA wants to
    be asked again (ARI), whether the CA's ARI knows the served certificate (then the order may
    say it ``replaces`` it), and a note (why ARI was not used)."""

    reason: str | None
    due_at: datetime | None = None
    next_check: datetime | None = None
    ari_known: bool = False
    note: str | None = None


def due(session: AcmeSession, current: Served, settings: RenewalSettings, now: datetime) -> Due:
    if current.urgent:
        return Due("the served certificate fails " + ", ".join(current.urgent))
    leaf = current.leaf
    if leaf is None:
        return Due("no certificate is served yet")
    note = None
    try:
        when, next_check = session.renewal_time(leaf.public_bytes(Encoding.PEM))
    except RenewalError as exc:  # e.g. 404: a certificate this CA did not issue (RFC 9773)
        when, next_check, note = None, None, f"{exc}; using the lifetime instead"
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    renew_at = leaf.not_valid_after_utc - lifetime * settings.renew_fraction
    if note is None and when is not None:
        reason = f"inside the CA's renewal window (ARI, from {when:%Y-%m-%d %H:%M} UTC)"
        # Early: the window opens before half the lifetime, far before any CA's routine window
        # (Let's Encrypt's opens at about two thirds): the CA is replacing certificates.
        if when < renew_at - EARLY and when < leaf.not_valid_before_utc + lifetime / 2:
            reason = (
                f"renewed early: the CA asked (its renewal window opens {when:%Y-%m-%d %H:%M} "
                f"UTC, the plan was {renew_at:%Y-%m-%d %H:%M} UTC)"
            )
        return Due(reason if now >= when else None, when, next_check, True)
    share = f"less than {settings.renew_fraction:.0%} of the lifetime left"
    return Due(share if now >= renew_at else None, renew_at, next_check, False, note)


def due_by_lifetime(current: Served, settings: RenewalSettings, now: datetime) -> datetime | None:
    """When the served certificate is due by what is known without the CA (a rule renewal
    fixes, nothing served, or the share of its lifetime): ``None`` when it is due now."""
    if current.urgent or current.leaf is None:
        return None
    leaf = current.leaf
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    renew_at = leaf.not_valid_after_utc - lifetime * settings.renew_fraction
    return renew_at if now < renew_at else None


def precheck(names: list[str], policies: list[Policy]) -> str | None:
    """What is knowable before ordering: would a certificate for ``names`` satisfy every
    connector the renewal's endpoints relay through, and is the connector domain accepted?"""
    for policy in policies:
        connector = policy.connector
        if connector is None:
            continue
        pattern = connector.tls_sender_certificate_name
        if not any(connector_match(pattern, name) for name in names):
            return (
                f"the names {', '.join(names)} would not match connector '{connector.name}' "
                f"('{pattern}'); fix `names` (nothing was ordered)"
            )
        domain = base_domain(pattern)
        if registered_domain(domain, policy.accepted_domains) is None:
            return (
                f"connector '{connector.name}' uses '{domain}', which is not an accepted domain; "
                "no certificate can fix that (nothing was ordered)"
            )
    return None


def policies(context: RenewalContext, now: datetime, anchors: TrustAnchors) -> list[Policy]:
    """The policies of the connectors the renewal's endpoints serve (for the gate)."""
    return [
        Policy(now, context.accepted_domains, connector, context.expiry, anchors)
        for connector in context.connectors
    ]
