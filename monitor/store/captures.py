"""Captures: messages the capture listener received that no outbound check took while waiting
(late probes, further deliveries of a check's token, hand test sends, strays, tokens from outside
an endpoint's ``relay_addresses``).  Their session (never a body), kind, reason and verdict are
kept so ``relaycert status``, the report and ``/metrics`` can show the unattributed ones:
``endpoint`` is set only for a delivery that counts for that endpoint's own check."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session, col

from monitor.store.engine import Store
from monitor.store.models import CaptureRow


@dataclass(frozen=True)
class CaptureStatus:
    at: datetime
    peer: str
    ehlo: str | None
    tls_version: str | None
    leaf_sha256: str | None
    endpoint: str | None
    worst: str | None
    findings: list[str]
    kind: str = "unattributed"  # late | again | late, superseded | test | unattributed
    reason: str | None = None
    for_endpoint: str | None = None  # the endpoint a test send was judged against


def save(
    store: Store,
    session: dict[str, Any],
    *,
    at: datetime,
    endpoint: str | None,
    tls_version: str | None,
    leaf_sha256: str | None,
    worst: str | None,
) -> None:
    def work(db: Session) -> None:
        db.add(
            CaptureRow(
                at=at,
                peer=str(session.get("peer", ""))[:64],
                ehlo=session.get("ehlo"),
                tls_version=tls_version,
                leaf_sha256=leaf_sha256,
                endpoint=endpoint,
                worst=worst,
                session=session,
            )
        )

    store.retrying("storing a capture", work)


def recent(
    store: Store, limit: int = 20, unattributed_only: bool = True, since: datetime | None = None
) -> list[CaptureStatus]:
    """The newest captures (by default only those attributed to no endpoint's check)."""
    query = select(CaptureRow).order_by(col(CaptureRow.id).desc()).limit(limit)
    if unattributed_only:
        query = query.where(col(CaptureRow.endpoint).is_(None))
    if since is not None:
        query = query.where(col(CaptureRow.at) >= since)
    with store.reading("reading captures") as db:
        return [
            CaptureStatus(
                r.at,
                r.peer,
                r.ehlo,
                r.tls_version,
                r.leaf_sha256,
                r.endpoint,
                r.worst,
                list(r.session.get("findings", [])),
                str(r.session.get("kind") or "unattributed"),
                r.session.get("reason"),
                r.session.get("for_endpoint"),
            )
            for r in db.scalars(query)
        ]


def unattributed_count(store: Store, since: datetime) -> int:
    """Captures since ``since`` that no valid token attributes to a check (test sends
    included), counted by the database."""
    with store.reading("counting unattributed captures") as db:
        query = select(func.count()).where(
            col(CaptureRow.endpoint).is_(None), col(CaptureRow.at) >= since
        )
        return int(db.scalar(query) or 0)
