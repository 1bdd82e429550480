"""Storing a scan: endpoints, certificates (deduplicated by SHA-256), observations on change,
findings and daily probe counters, in the caller's transaction and with bulk statements (a
2000-address scan is one statement per table)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import bindparam, case, insert, select, update
from sqlmodel import Session, col

from checks.base import Direction
from checks.certinfo import fingerprint
from monitor.results import ScanRecord
from monitor.store import rows as values
from monitor.store.engine import Store, insert_new
from monitor.store.models import (
    CertificateRow,
    EndpointRow,
    FindingRow,
    ObservationRow,
    ProbeDayRow,
)
from monitor.store.queries import in_slices, latest_rows

Hook: TypeAlias = Callable[[Session, dict[str, int]], None]
Days: TypeAlias = dict[tuple[int, str, date], list[int]]


def record(store: Store, records: Sequence[ScanRecord], hook: Hook | None = None) -> None:
    """Store a scan's results in one transaction (all or nothing; tried again when it meets
    another instance's, see :meth:`Store.retrying`).  ``hook`` runs in the same transaction
    with the endpoint ids (baselines, alerts, outbox): database work only."""

    def work(session: Session) -> None:
        endpoint_ids = write_scan(session, records, store.heartbeat, store.dialect, store.clock())
        if hook is not None:
            hook(session, endpoint_ids)

    store.retrying("storing the scan", work)


def write_scan(
    session: Session,
    records: Sequence[ScanRecord],
    heartbeat: timedelta,
    dialect: str,
    now: datetime,
) -> dict[str, int]:
    """Write ``records`` (new endpoint and certificate rows created at ``now``); returns the
    endpoint ids by name."""
    endpoints = _endpoints(session, records, dialect, now)
    # Many addresses serve the same certificate objects: fingerprint each object once.
    sha: dict[int, str] = {id(c): fingerprint(c) for r in records for c in r.chain}
    _certificates(session, {sha[id(c)]: c for r in records for c in r.chain}, dialect, now)
    latest = latest_rows(session, set(endpoints.values()))
    rows: list[dict[str, Any]] = []
    inserted: list[ScanRecord] = []
    repeats: list[dict[str, Any]] = []
    days: Days = {}
    for record in records:
        result = record.result
        endpoint_id = endpoints[result.target.endpoint]
        prints = [sha[id(c)] for c in record.chain]
        sign = values.signature(record, prints)
        direction = result.target.direction
        if direction is Direction.FROM_EXO:  # availability counts the listener probes
            day = days.setdefault(
                (endpoint_id, result.target.address, result.started_at.date()), [0, 0]
            )
            day[0] += 1
            day[1] += result.status.value == "ok"
        last = latest.get((endpoint_id, result.target.address, direction.value))
        if last is not None and values.repeats(last, sign, result.started_at, heartbeat):
            repeats.append({"id": last.id, "last_seen_at": result.started_at})
            continue
        inserted.append(record)
        rows.append(values.row(record, endpoint_id, prints, sign))
    _count_days(session, days, dialect)
    _mark_repeats(session, repeats)
    _insert_observations(session, rows, inserted)
    return endpoints


def _mark_repeats(session: Session, repeats: list[dict[str, Any]]) -> None:
    if not repeats:
        return
    # A Core UPDATE by primary key, one executemany (the ORM's bulk UPDATE costs twice as much
    # per row in bookkeeping; there is nothing in the session to keep in step).  Relative to
    # the row as it is when updated, not as it was read: another instance counting the same
    # row at the same moment adds its probe too.
    table = ObservationRow.__table__  # type: ignore[attr-defined]
    seen = bindparam("seen", type_=table.c.last_seen_at.type)
    statement = (
        update(table)
        .where(table.c.id == bindparam("row_id"))
        .values(
            last_seen_at=case((table.c.last_seen_at < seen, seen), else_=table.c.last_seen_at),
            repeats=table.c.repeats + 1,
        )
    )
    session.execute(statement, [{"row_id": r["id"], "seen": r["last_seen_at"]} for r in repeats])


def _insert_observations(
    session: Session, rows: list[dict[str, Any]], inserted: list[ScanRecord]
) -> None:
    if not rows:
        return
    table = ObservationRow.__table__  # type: ignore[attr-defined]
    keys = [(row["endpoint_id"], row["address"], row["direction"]) for row in rows]
    if len(set(keys)) == len(keys):
        # Core rows, each returned with its key: the database may batch them into a few
        # multi-row INSERTs (asking for the ids in parameter order made SQLite insert one row
        # per statement: most of the time a 20 000-address scan spent storing).
        returning = (table.c.id, table.c.endpoint_id, table.c.address, table.c.direction)
        by_key = {
            (row.endpoint_id, row.address, row.direction): row.id
            for row in session.execute(insert(table).returning(*returning), rows)
        }
        ids = [by_key[key] for key in keys]
    else:  # the same address twice in one batch (a configuration listing it twice)
        ids = list(
            session.scalars(
                insert(table).returning(table.c.id, sort_by_parameter_order=True), rows
            ).all()
        )
    findings = [
        {
            "observation_id": observation_id,
            "rule": f.rule,
            "severity": f.severity.value,
            "message": f.message,
        }
        for observation_id, record in zip(ids, inserted, strict=True)
        for f in record.findings
    ]
    if findings:
        session.execute(insert(FindingRow.__table__), findings)  # type: ignore[attr-defined]


def _count_days(session: Session, days: Days, dialect: str) -> None:
    if not days:
        return
    # The dialect's own INSERT (for ON CONFLICT), imported for the dialect in use only.
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]
    table = ProbeDayRow.__table__  # type: ignore[attr-defined]
    statement = dialect_insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=["endpoint_id", "address", "day"],
        set_={
            "attempts": table.c.attempts + statement.excluded.attempts,
            "successes": table.c.successes + statement.excluded.successes,
        },
    )
    session.execute(
        statement,
        [
            {"endpoint_id": e, "address": a, "day": d, "attempts": n[0], "successes": n[1]}
            for (e, a, d), n in days.items()
        ],
    )


def _endpoints(
    session: Session, records: Sequence[ScanRecord], dialect: str, now: datetime
) -> dict[str, int]:
    """The endpoint ids by name: new endpoints inserted, changed listeners updated, in bulk
    statements (plain rows, no ORM objects: a 20 000-endpoint scan writes in seconds)."""
    names = {r.result.target.endpoint for r in records}
    table = EndpointRow.__table__  # type: ignore[attr-defined]
    existing: dict[str, tuple[int, tuple[object, ...]]] = {}
    chosen = select(table.c.id, table.c.name, table.c.host, table.c.port, table.c.mode)
    chosen = chosen.add_columns(table.c.connector)
    for chunk in in_slices(sorted(names)):
        for row in session.execute(chosen.where(table.c.name.in_(chunk))):
            existing[row.name] = (row.id, (row.host, row.port, row.mode, row.connector))
    new: dict[str, dict[str, Any]] = {}
    changed: dict[int, dict[str, Any]] = {}
    for record in records:
        target = record.result.target
        wanted = (target.host, target.port, record.mode, record.connector)
        values = dict(zip(("host", "port", "mode", "connector"), wanted, strict=True))
        found = existing.get(target.endpoint)
        if found is None:
            new.setdefault(target.endpoint, {"name": target.endpoint, **values})
        elif target.direction is Direction.FROM_EXO and found[1] != wanted:
            # the endpoint row describes the listener; outbound checks submit elsewhere
            changed[found[0]] = {"id": found[0], **values}
    ids = {name: found[0] for name, found in existing.items()}
    if new:
        inserted = session.execute(  # each id comes with its name: no order needed
            insert_new(table, dialect, "name").returning(table.c.id, table.c.name),
            # in one order on every instance: two inserting overlapping rows cannot deadlock
            [{**new[name], "created_at": now} for name in sorted(new)],
        )
        ids.update({row.name: row.id for row in inserted})
        raced = sorted(set(new) - set(ids))  # inserted meanwhile by another instance
        for chunk in in_slices(raced):
            for row in session.execute(chosen.where(table.c.name.in_(chunk))):
                ids[row.name] = row.id
    if changed:
        session.execute(update(EndpointRow), list(changed.values()))
    return ids


def _certificates(
    session: Session, unique: dict[str, x509.Certificate], dialect: str, now: datetime
) -> None:
    if not unique:
        return
    known = set(
        session.scalars(
            select(col(CertificateRow.sha256)).where(col(CertificateRow.sha256).in_(list(unique)))
        )
    )
    new = [
        {
            "sha256": sha,
            "der": cert.public_bytes(Encoding.DER),
            "subject": cert.subject.rfc4514_string(),
            "issuer": cert.issuer.rfc4514_string(),
            "serial": format(cert.serial_number, "x"),
            "not_before": cert.not_valid_before_utc,
            "not_after": cert.not_valid_after_utc,
            "first_seen": now,
        }
        for sha, cert in sorted(unique.items())  # one order everywhere: no deadlock
        if sha not in known
    ]
    if new:
        table = CertificateRow.__table__  # type: ignore[attr-defined]
        session.execute(insert_new(table, dialect, "sha256"), new)
