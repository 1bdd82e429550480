"""The store: endpoints, observations, certificates (deduplicated by SHA-256) and findings.

SQLite by default, PostgreSQL through the same code.  :meth:`Store.open` brings the schema to the
newest Alembic revision.  A scan is written in one transaction, so a failed run adds nothing and
removes nothing.  Database errors are mapped to :class:`~monitor.errors.StoreError` here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeAlias

from alembic import command
from alembic.config import Config as AlembicConfig
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import Engine, Table, bindparam, create_engine, event, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, SQLModel, col

from checks.base import Baseline, Finding, worst
from checks.certinfo import clip, fingerprint
from monitor.errors import StoreError
from monitor.probe.smtp import ProbeResult
from monitor.store.models import CertificateRow, EndpointRow, FindingRow, ObservationRow

MIGRATIONS = Path(__file__).parent / "migrations"
OBSERVATION: Table = SQLModel.metadata.tables["observation"]
FINDING: Table = SQLModel.metadata.tables["finding"]
CERTIFICATE: Table = SQLModel.metadata.tables["certificate"]
PROBE_DAY: Table = SQLModel.metadata.tables["probe_day"]
HEARTBEAT = timedelta(hours=24)


def signature(record: ScanRecord, prints: list[str]) -> str:
    """What makes two probes of one address "the same" for storage."""
    result = record.result
    canonical = json.dumps(
        [
            result.status.value,
            result.failed_step,
            result.error,
            result.tls_version,
            prints,
            sorted((f.rule, f.severity.value, f.message) for f in record.findings),
        ]
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ScanRecord:
    """One probe result with its parsed chain and its findings, ready to be stored.

    ``evaluated`` are the rules that ran (a rule that did not run says nothing); ``baseline`` is
    the accepted certificate it was compared with and ``candidate`` what accepting this
    observation would make the baseline.
    """

    result: ProbeResult
    chain: tuple[x509.Certificate, ...]
    findings: tuple[Finding, ...]
    mode: str
    connector: str | None
    evaluated: frozenset[str] = frozenset()
    baseline: Baseline | None = None
    candidate: Baseline | None = None


Hook: TypeAlias = Callable[[Session, dict[str, int]], None]


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # a URL too broken to parse is shown by its scheme only
        return url.split(":", 1)[0] + ":..."


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class Store:
    """Access to the database.  Create with :meth:`open`."""

    def __init__(self, engine: Engine, heartbeat: timedelta = HEARTBEAT) -> None:
        self.engine = engine
        self.heartbeat = heartbeat

    @classmethod
    def open(cls, url: str, heartbeat: timedelta = HEARTBEAT) -> Store:
        """Connect, migrate to the newest schema, and return the store."""
        shown = _redact(url)
        try:
            if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            connect_args = {"connect_timeout": 10} if url.startswith("postgresql") else {}
            engine = create_engine(url, connect_args=connect_args)
            if engine.dialect.name == "sqlite":
                event.listen(engine, "connect", _sqlite_pragmas)
            store = cls(engine, heartbeat)
            store.migrate()
        except StoreError:
            raise
        except (SQLAlchemyError, OSError, ImportError, ValueError) as exc:
            raise StoreError(
                f"cannot open the store at {shown}: {clip(str(exc).splitlines()[0], 300)}; "
                "check [database] in the configuration"
            ) from exc
        return store

    def migrate(self) -> None:
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def close(self) -> None:
        self.engine.dispose()

    def record(self, records: Sequence[ScanRecord], hook: Hook | None = None) -> None:
        """Store a scan's results in one transaction (all or nothing).  ``hook`` runs in the
        same transaction with the endpoint ids (baselines, alerts, outbox)."""
        try:
            with Session(self.engine) as session, session.begin():
                endpoint_ids = self._record(session, records)
                if hook is not None:
                    hook(session, endpoint_ids)
        except SQLAlchemyError as exc:
            raise StoreError(
                f"could not store the scan in {_redact(str(self.engine.url))}: "
                f"{clip(str(exc).splitlines()[0], 300)}; nothing of this run was stored"
            ) from exc

    def endpoint_ids(self, names: Iterable[str]) -> dict[str, int]:
        with Session(self.engine) as session:
            query = select(EndpointRow).where(col(EndpointRow.name).in_(list(names)))
            rows = session.scalars(query)
            return {row.name: row.id for row in rows if row.id is not None}

    def session(self) -> Session:
        return Session(self.engine)

    def _record(self, session: Session, records: Sequence[ScanRecord]) -> dict[str, int]:
        # Core bulk inserts, not ORM objects: a 2000-address scan is one statement per table.
        endpoints = self._endpoints(session, records)
        # Many addresses serve the same certificate objects: fingerprint each object once.
        sha: dict[int, str] = {id(c): fingerprint(c) for r in records for c in r.chain}
        self._certificates(session, {sha[id(c)]: c for r in records for c in r.chain})
        latest = self._latest_rows(session, set(endpoints.values()))
        rows: list[dict[str, Any]] = []
        inserted: list[ScanRecord] = []
        repeats: list[dict[str, Any]] = []
        days: dict[tuple[int, str, date], list[int]] = {}
        for record in records:
            result = record.result
            endpoint_id = endpoints[result.target.endpoint]
            prints = [sha[id(c)] for c in record.chain]
            sign = signature(record, prints)
            day = days.setdefault(
                (endpoint_id, result.target.address, result.started_at.date()), [0, 0]
            )
            day[0] += 1
            day[1] += result.status.value == "ok"
            last = latest.get((endpoint_id, result.target.address))
            if (
                last is not None
                and last.signature == sign
                and result.started_at - last.started_at < self.heartbeat
                and result.started_at >= (last.last_seen_at or last.started_at)
            ):
                repeats.append({"oid": last.id, "seen": result.started_at})
                continue
            severity = worst(f.severity for f in record.findings)
            inserted.append(record)
            rows.append(
                {
                    "endpoint_id": endpoint_id,
                    "address": result.target.address,
                    "started_at": result.started_at,
                    "last_seen_at": result.started_at,
                    "repeats": 1,
                    "signature": sign,
                    "duration_ms": result.timings.get("total", 0.0),
                    "status": result.status.value,
                    "failed_step": result.failed_step,
                    "error": result.error,
                    "banner": result.banner,
                    "ehlo": list(result.ehlo),
                    "starttls_reply": result.starttls_reply,
                    "tls_version": result.tls_version,
                    "cipher": result.cipher,
                    "leaf_sha256": prints[0] if prints else None,
                    "chain": prints,
                    "timings": result.timings,
                    "worst": severity.value if severity else None,
                }
            )
        self._count_days(session, days)
        if repeats:
            session.execute(
                update(OBSERVATION)
                .where(OBSERVATION.c.id == bindparam("oid"))
                .values(last_seen_at=bindparam("seen"), repeats=OBSERVATION.c.repeats + 1),
                repeats,
            )
        if not rows:
            return endpoints
        ids = session.scalars(
            insert(OBSERVATION).returning(OBSERVATION.c.id, sort_by_parameter_order=True),
            rows,
        ).all()
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
            session.execute(insert(FINDING), findings)
        return endpoints

    def _latest_rows(self, session: Session, endpoint_ids: set[int]) -> dict[tuple[int, str], Any]:
        """The newest observation row of every address of these endpoints."""
        if not endpoint_ids:
            return {}
        newest = (
            select(func.max(OBSERVATION.c.id))
            .where(OBSERVATION.c.endpoint_id.in_(endpoint_ids))
            .group_by(OBSERVATION.c.endpoint_id, OBSERVATION.c.address)
        )
        query = select(
            OBSERVATION.c.id,
            OBSERVATION.c.endpoint_id,
            OBSERVATION.c.address,
            OBSERVATION.c.signature,
            OBSERVATION.c.started_at,
            OBSERVATION.c.last_seen_at,
        ).where(OBSERVATION.c.id.in_(newest))
        return {(row.endpoint_id, row.address): row for row in session.execute(query)}

    def _count_days(self, session: Session, days: dict[tuple[int, str, date], list[int]]) -> None:
        if not days:
            return
        table = PROBE_DAY
        dialect_insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
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

    def _endpoints(self, session: Session, records: Sequence[ScanRecord]) -> dict[str, int]:
        names = {r.result.target.endpoint for r in records}
        existing = {
            row.name: row
            for row in session.scalars(select(EndpointRow).where(col(EndpointRow.name).in_(names)))
        }
        for record in records:
            target = record.result.target
            row = existing.get(target.endpoint)
            if row is None:
                row = EndpointRow(
                    name=target.endpoint,
                    host=target.host,
                    port=target.port,
                    mode=record.mode,
                    connector=record.connector,
                )
                session.add(row)
                existing[target.endpoint] = row
            elif (row.host, row.port, row.mode, row.connector) != (
                target.host,
                target.port,
                record.mode,
                record.connector,
            ):
                row.host, row.port = target.host, target.port
                row.mode, row.connector = record.mode, record.connector
        session.flush()
        return {name: row.id for name, row in existing.items() if row.id is not None}

    def _certificates(self, session: Session, unique: dict[str, x509.Certificate]) -> None:
        if not unique:
            return
        known = set(
            session.scalars(
                select(col(CertificateRow.sha256)).where(
                    col(CertificateRow.sha256).in_(list(unique))
                )
            )
        )
        now = datetime.now(UTC)
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
            for sha, cert in unique.items()
            if sha not in known
        ]
        if new:
            session.execute(insert(CERTIFICATE), new)

    def counts(self) -> dict[str, int]:
        """Row counts per table (for status output and tests)."""
        with Session(self.engine) as session:
            return {
                model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
                for model in (EndpointRow, CertificateRow, ObservationRow, FindingRow)
            }
