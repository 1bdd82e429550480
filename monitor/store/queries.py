"""The reads every part of relaycert shares.  The newest observation per address is written here
once (:func:`newest_ids`); status, reports, renewal and the scan's own writes all use it.

Functions taking a ``Session`` run inside a caller's :meth:`Store.reading` or
:meth:`Store.transaction`; functions taking a ``Store`` open their own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

from cryptography import x509
from sqlalchemy import Row, Select, func, select
from sqlmodel import Session, col

from checks.base import UNKNOWN_DELIVERY, Baseline
from monitor.store.engine import Store
from monitor.store.models import (
    BaselineRow,
    CertificateRow,
    EndpointRow,
    FindingRow,
    ObservationRow,
)

# The newest row's storage columns: (id, endpoint_id, address, direction, signature,
# started_at, last_seen_at, repeats).
LatestRow: TypeAlias = Row[int | None, int, str, str, str, datetime, datetime | None, int]
# What observations, alerts and baselines are kept per: (endpoint id, address, direction).
Key: TypeAlias = tuple[int, str, str]


def newest_ids(
    endpoint_ids: Collection[int] | None = None, before: datetime | None = None
) -> Select[int | None]:
    """The id of the newest observation row of every address and direction (rows are stored on
    change), of these endpoints, and started before ``before``."""
    query = select(func.max(col(ObservationRow.id)))
    if endpoint_ids is not None:
        query = query.where(col(ObservationRow.endpoint_id).in_(list(endpoint_ids)))
    if before is not None:
        query = query.where(col(ObservationRow.started_at) < before)
    return query.group_by(
        col(ObservationRow.endpoint_id), col(ObservationRow.address), col(ObservationRow.direction)
    )


def latest_rows(session: Session, endpoint_ids: Collection[int]) -> dict[Key, LatestRow]:
    """The newest row's storage columns per key, for the scan's writes."""
    if not endpoint_ids:
        return {}
    o = ObservationRow
    query = select(
        col(o.id),
        col(o.endpoint_id),
        col(o.address),
        col(o.direction),
        col(o.signature),
        col(o.started_at),
        col(o.last_seen_at),
        col(o.repeats),
    ).where(col(o.id).in_(newest_ids(endpoint_ids)))
    return {(row.endpoint_id, row.address, row.direction): row for row in session.execute(query)}


def latest_observations(
    session: Session, endpoint_ids: Collection[int] | None = None
) -> list[ObservationRow]:
    """The newest observation of every address (of these endpoints)."""
    query = select(ObservationRow).where(col(ObservationRow.id).in_(newest_ids(endpoint_ids)))
    return list(session.scalars(query))


def endpoints_by_name(
    session: Session, names: Iterable[str] | None = None
) -> dict[str, EndpointRow]:
    query = select(EndpointRow)
    if names is not None:
        query = query.where(col(EndpointRow.name).in_(list(names)))
    return {row.name: row for row in session.scalars(query)}


def findings_of(
    session: Session, observation_ids: Iterable[int | None]
) -> dict[int, list[FindingRow]]:
    found: dict[int, list[FindingRow]] = defaultdict(list)
    query = select(FindingRow).where(col(FindingRow.observation_id).in_(list(observation_ids)))
    for finding in session.scalars(query):
        found[finding.observation_id].append(finding)
    return found


def certificates(session: Session, shas: Iterable[str]) -> dict[str, x509.Certificate]:
    """Parsed certificates by SHA-256."""
    query = select(CertificateRow).where(col(CertificateRow.sha256).in_(list(shas)))
    return {row.sha256: x509.load_der_x509_certificate(row.der) for row in session.scalars(query)}


def chain_of(session: Session, shas: list[str]) -> tuple[x509.Certificate, ...]:
    """A stored chain in its order (fingerprints not in the store are skipped)."""
    known = certificates(session, shas)
    return tuple(known[sha] for sha in shas if sha in known)


def not_after(session: Session, shas: Iterable[str]) -> dict[str, datetime]:
    query = select(col(CertificateRow.sha256), col(CertificateRow.not_after)).where(
        col(CertificateRow.sha256).in_(list(shas))
    )
    return {sha: when for sha, when in session.execute(query)}


MISSES = ("unreachable", "not_delivered")  # a probe that measured nothing


def last_known(session: Session, latest: Iterable[ObservationRow]) -> dict[Key, ObservationRow]:
    """What still counts, marked "last seen", for addresses whose newest observation (in
    ``latest``) leaves the certificate unknown.  After a miss (unreachable, never arrived): the
    newest observation that measured anything, so a newer measured failure (no STARTTLS, a
    failed handshake, no client certificate) is never replaced by an older success.  After a
    listener probe that got no certificate: the newest that had one."""
    latest = list(latest)
    o = ObservationRow
    found: dict[Key, ObservationRow] = {}
    misses = [r for r in latest if r.status in MISSES]
    served_without_leaf = [
        r
        for r in latest
        if r.status not in MISSES and not r.leaf_sha256 and r.direction == "from_exchange_online"
    ]
    for rows, measured in (
        (misses, col(o.status).not_in(MISSES)),
        (served_without_leaf, col(o.leaf_sha256).is_not(None)),
    ):
        if not rows:
            continue
        newest = (
            select(func.max(col(o.id)))
            .where(col(o.endpoint_id).in_({r.endpoint_id for r in rows}), measured)
            .group_by(col(o.endpoint_id), col(o.address), col(o.direction))
        )
        wanted = {(r.endpoint_id, r.address, r.direction) for r in rows}
        for r in session.scalars(select(o).where(col(o.id).in_(newest))):
            key = (r.endpoint_id, r.address, r.direction)
            if key in wanted:
                found[key] = r
    return found


@dataclass(frozen=True)
class Current:
    """What the store knows now of some addresses: each one's newest observation, where that
    measured nothing the last one that did (:func:`last_known`), and the findings of both."""

    latest: list[ObservationRow]
    known: dict[Key, ObservationRow]
    findings: dict[int, list[FindingRow]]  # by observation id

    @property
    def rows(self) -> list[ObservationRow]:
        """Every observation read: the newest ones and the last known."""
        return [*self.latest, *self.known.values()]

    def leaves(self) -> set[str]:
        """The leaf fingerprints of every observation read."""
        return {o.leaf_sha256 for o in self.rows if o.leaf_sha256}


def current(session: Session, latest: Iterable[ObservationRow]) -> Current:
    """:class:`Current` for these newest observations (from :func:`latest_observations`)."""
    latest = list(latest)
    known = last_known(session, latest)
    found = findings_of(session, [o.id for o in [*latest, *known.values()]])
    return Current(latest, known, found)


IN_SLICE = 900  # values per IN (...): SQLite's old default limit is 999 variables


def in_slices(items: list[str]) -> Iterator[list[str]]:
    """Lists short enough for an IN (...) on every database (SQLite's variable limit)."""
    for start in range(0, len(items), IN_SLICE):
        yield items[start : start + IN_SLICE]


def baselines(store: Store, names: Iterable[str]) -> dict[tuple[str, str, str], Baseline]:
    """The accepted certificate per (endpoint name, address, direction) of these endpoints:
    plain rows of one join (20 000 ORM objects cost a second to build), in slices short
    enough for every database's limit on an IN (...)."""
    endpoint, baseline = EndpointRow.__table__, BaselineRow.__table__  # type: ignore[attr-defined]
    query = select(
        endpoint.c.name,
        baseline.c.address,
        baseline.c.direction,
        baseline.c.sha256,
        baseline.c.names,
        baseline.c.issuer,
        baseline.c.spki_sha256,
        baseline.c.tls_version,
    ).join_from(baseline, endpoint, baseline.c.endpoint_id == endpoint.c.id)
    found: dict[tuple[str, str, str], Baseline] = {}
    with store.reading("reading baselines") as session:
        for chunk in in_slices(sorted(set(names))):
            rows = session.execute(query.where(endpoint.c.name.in_(chunk)))
            for name, address, direction, sha, known, issuer, spki, version in rows:
                found[(name, address, direction)] = Baseline(
                    sha, tuple(known), issuer, spki, version
                )
    return found


def stored_contract(session: object) -> str:
    """The delivery contract line stored with a served observation.  None is stored when
    nothing was known (and none before relaycert recorded contracts): it was judged as
    under CertificateValidation."""
    delivery = session.get("delivery") if isinstance(session, dict) else None
    text = delivery.get("contract") if isinstance(delivery, dict) else None
    return text if isinstance(text, str) else UNKNOWN_DELIVERY
