"""Baselines: the certificate last accepted per endpoint address, which drift is measured
against.  Set first by a scan, moved by clean renewals, by ``relaycert accept`` and by a
verified ACME renewal."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from cryptography import x509
from sqlalchemy import select
from sqlmodel import Session, col

from checks.base import Baseline, Observation, ProbeStatus
from checks.drift import baseline_of
from monitor.errors import RelaycertError
from monitor.store import queries
from monitor.store.engine import Store, insert_new
from monitor.store.models import BaselineRow, EndpointRow, ObservationRow
from monitor.store.queries import Key


def set_baseline(session: Session, key: Key, baseline: Baseline, by: str, now: datetime) -> None:
    endpoint_id, address, direction = key
    row = session.scalars(
        select(BaselineRow).where(
            col(BaselineRow.endpoint_id) == endpoint_id,
            col(BaselineRow.address) == address,
            col(BaselineRow.direction) == direction,
        )
    ).first()
    if row is None:
        row = BaselineRow(
            endpoint_id=endpoint_id,
            address=address,
            direction=direction,
            sha256="",
            issuer="",
            spki_sha256="",
            accepted_at=now,
            accepted_by=by,
        )
    row.sha256, row.names, row.issuer = baseline.sha256, list(baseline.names), baseline.issuer
    row.spki_sha256, row.tls_version = baseline.spki_sha256, baseline.tls_version
    row.accepted_at, row.accepted_by = now, by
    session.add(row)


def insert_first(session: Session, first: dict[Key, Baseline], now: datetime) -> None:
    """A fleet's first baselines: one bulk insert, not a query per address; one another
    instance inserted meanwhile is kept."""
    if not first:
        return
    dialect = session.get_bind().dialect.name
    table = BaselineRow.__table__  # type: ignore[attr-defined]  # Core: no ORM bookkeeping
    session.execute(
        # another instance may set the same first baseline at the same moment: it stands
        insert_new(table, dialect, "endpoint_id", "address", "direction"),
        [
            {
                "endpoint_id": e,
                "address": a,
                "direction": d,
                "sha256": b.sha256,
                "names": list(b.names),
                "issuer": b.issuer,
                "spki_sha256": b.spki_sha256,
                "tls_version": b.tls_version,
                "accepted_at": now,
                "accepted_by": "initial",
            }
            for (e, a, d), b in first.items()
        ],
    )


def accept(store: Store, endpoint: str, now: datetime) -> list[tuple[str, str, str]]:
    """Make each address's current certificate its baseline, in each direction; returns
    (address, direction, sha256)."""

    def work(session: Session) -> list[tuple[str, str, str]]:
        accepted: list[tuple[str, str, str]] = []
        row = queries.endpoints_by_name(session, [endpoint]).get(endpoint)
        if row is None or row.id is None:
            raise RelaycertError(f"endpoint '{endpoint}' has never been probed; run a scan first")
        for obs in queries.latest_observations(session, [row.id]):
            if not obs.chain:
                continue
            chain = queries.chain_of(session, obs.chain)
            candidate = baseline_of(Observation(ProbeStatus.OK, chain, tls_version=obs.tls_version))
            if candidate is not None:
                key = (row.id, obs.address, obs.direction)
                set_baseline(session, key, candidate, "manual", now)
                accepted.append((obs.address, obs.direction, candidate.sha256))
        return accepted

    accepted = store.retrying(f"accepting the certificates of {endpoint}", work)
    if not accepted:
        raise RelaycertError(f"endpoint '{endpoint}' has no probe with a certificate to accept")
    return accepted


def accept_renewed(
    store: Store, endpoints: Iterable[str], chain: tuple[x509.Certificate, ...], now: datetime
) -> None:
    """A renewal relaycert deployed and verified becomes every address's baseline: routine
    renewals do not page anyone (the renewal itself is recorded and reported)."""
    candidate = baseline_of(Observation(ProbeStatus.OK, chain))
    if candidate is None:
        return

    def work(session: Session) -> None:
        rows = session.execute(
            select(
                col(ObservationRow.endpoint_id),
                col(ObservationRow.address),
                col(ObservationRow.direction),
            )
            .join(EndpointRow, col(EndpointRow.id) == col(ObservationRow.endpoint_id))
            .where(col(EndpointRow.name).in_(list(endpoints)))
            .distinct()
        ).all()
        for endpoint_id, address, direction in rows:
            set_baseline(session, (endpoint_id, address, direction), candidate, "renewal", now)

    store.retrying("accepting the renewed certificate", work)
