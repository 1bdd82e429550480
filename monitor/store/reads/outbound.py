"""The outbound checks' history: consecutive misses, and the newest check's result as stored
(which address its endpoint's results are keyed by, when it ran, what it measured), which a
late or further delivery of a token is judged against."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from monitor.store.engine import Store
from monitor.store.models import CertificateRow, ObservationRow
from monitor.store.queries import endpoints_by_name


def outbound_misses(store: Store | None, names: Collection[str], limit: int) -> dict[str, int]:
    """Consecutive outbound checks that never arrived, newest first, per endpoint name (at most
    ``limit``): the stored rows count their repeats."""
    if store is None or not names:
        return {}
    o = ObservationRow
    found: dict[str, int] = {}
    with store.reading("reading outbound misses") as session:
        for name, row in endpoints_by_name(session, names).items():
            query = (
                select(col(o.status), col(o.repeats))
                .where(col(o.endpoint_id) == row.id, col(o.direction) == "to_exchange_online")
                .order_by(col(o.id).desc())
                .limit(limit)
            )
            count = 0
            for status, repeats in session.execute(query):
                if status != "not_delivered":
                    break
                count += repeats
            found[name] = min(count, limit)
    return found


MEASURED_OUTBOUND = ("ok", "no_client_cert", "no_tls")  # statuses where a probe arrived


@dataclass(frozen=True)
class StoredCheck:
    """Endpoint ``name``'s newest outbound result as stored: when its check ran (``checked``: a
    repeated row's last time), its address, what it measured and its session (deliveries)."""

    address: str
    started_at: datetime
    checked: datetime
    status: str
    tls_version: str | None
    cipher: str | None
    chain_der: tuple[bytes, ...]
    session: dict[str, Any]


def newest_check(store: Store | None, name: str) -> StoredCheck | None:
    """Endpoint ``name``'s newest outbound result, with its chain's DER (``None``: none yet)."""
    if store is None:
        return None
    o = ObservationRow
    with store.reading("reading the newest outbound check") as session:
        row = endpoints_by_name(session, [name]).get(name)
        if row is None:
            return None
        newest = session.scalars(
            select(o)
            .where(col(o.endpoint_id) == row.id, col(o.direction) == "to_exchange_online")
            .order_by(col(o.id).desc())
            .limit(1)
        ).first()
        if newest is None:
            return None
        prints = list(newest.chain or ())
        known = dict(
            session.execute(
                select(col(CertificateRow.sha256), col(CertificateRow.der)).where(
                    col(CertificateRow.sha256).in_(prints)
                )
            ).all()
        )
        return StoredCheck(
            address=newest.address,
            started_at=newest.started_at,
            checked=newest.last_seen_at or newest.started_at,
            status=newest.status,
            tls_version=newest.tls_version,
            cipher=newest.cipher,
            chain_der=tuple(bytes(known[p]) for p in prints if p in known),
            session=dict(newest.session or {}),
        )
