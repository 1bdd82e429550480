"""Passive captures: messages the capture listener received that no outbound check was waiting
for.  Their session (never a body) and verdict are kept so ``relaycert status`` can show the
ones that matched no endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlmodel import col

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
    with store.transaction("storing a passive capture") as db:
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


def recent(store: Store, limit: int = 20, unmatched_only: bool = True) -> list[CaptureStatus]:
    """The newest passive captures (only those matched to no endpoint, by default)."""
    query = select(CaptureRow).order_by(col(CaptureRow.id).desc()).limit(limit)
    if unmatched_only:
        query = query.where(col(CaptureRow.endpoint).is_(None))
    with store.reading("reading passive captures") as db:
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
            )
            for r in db.scalars(query)
        ]
