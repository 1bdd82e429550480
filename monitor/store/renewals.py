"""The ``renewal`` table: one row per renewal attempt and how it ended."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session, col

from monitor.store.engine import Store
from monitor.store.models import RenewalRow


def record_attempt(
    store: Store,
    name: str,
    started: datetime,
    outcome: str,
    detail: str,
    old_sha256: str | None,
    new_sha256: str | None,
    order_url: str | None,
    finished: datetime | None = None,
) -> int:
    """Store one attempt (``finished``: the renewal's clock, default now); returns its id."""

    def work(session: Session) -> int:
        row = RenewalRow(
            name=name,
            started_at=started,
            finished_at=finished or store.clock(),
            order_url=order_url,
            old_sha256=old_sha256,
            new_sha256=new_sha256,
            outcome=outcome,
            detail=detail[:2000],
        )
        session.add(row)
        session.flush()
        return row.id or 0

    return store.retrying(f"recording renewal '{name}'", work)


def renewed_by_relaycert(session: Session, shas: Iterable[str]) -> set[str]:
    """Of these leaf fingerprints, the ones a renewal relaycert ran deployed and verified."""
    query = select(col(RenewalRow.new_sha256)).where(
        col(RenewalRow.outcome) == "verified", col(RenewalRow.new_sha256).in_(list(shas))
    )
    return {sha for sha in session.scalars(query) if sha}
