"""Opening the store, and the one seam where database errors become :class:`StoreError`.

SQLite by default, PostgreSQL through the same code.  :meth:`Store.open` brings the schema to
the newest Alembic revision.  Every read and write runs inside :meth:`Store.reading` or
:meth:`Store.transaction`, which map any SQLAlchemy error to a one-line
:class:`~monitor.errors.StoreError` naming what failed and the (password-free) database URL; a
failed transaction is rolled back, so it adds nothing and removes nothing.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlmodel import Session

from checks.certinfo import clip
from monitor.clock import Clock, utcnow
from monitor.errors import StoreError, StoreGoneError
from monitor.logs import event as log_event
from monitor.store.models import CertificateRow, EndpointRow, FindingRow, ObservationRow

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration's revision (a test keeps it equal to Alembic's head): a store already
# there opens without importing Alembic, a third of a short command's start-up.
HEAD = "0006"
MIGRATE_LOCK = 0x72656C6179  # the advisory lock migrations hold on PostgreSQL ("relay")
HEARTBEAT = timedelta(hours=24)
# How often a transaction that met another instance's (serialisation failure, deadlock, a
# unique key inserted meanwhile, a lock held past the wait) or a dropped connection is tried
# in all, and the first pause between tries (growing fourfold, with jitter: 0.1, 0.4, 1.6,
# 6.4 s: about 8 s in all, what a PostgreSQL restart takes).
ATTEMPTS = 5
FIRST_PAUSE = 0.1
# PostgreSQL's SQLSTATEs of a conflict with a concurrent transaction: serialization_failure,
# deadlock_detected, unique_violation (a content-keyed row inserted meanwhile: a retry reads
# it), lock_not_available; and of a server going away: admin_shutdown, crash_shutdown,
# cannot_connect_now (a restart).
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "23505", "55P03", "57P01", "57P02", "57P03"})
# SQLite's: SQLITE_BUSY and SQLITE_LOCKED (any extended code), SQLITE_CONSTRAINT_PRIMARYKEY and
# SQLITE_CONSTRAINT_UNIQUE.
SQLITE_BUSY = frozenset({5, 6})
SQLITE_UNIQUE = frozenset({1555, 2067})
T = TypeVar("T")
log = logging.getLogger("relaycert.store")


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # a URL too broken to parse is shown by its scheme only
        return url.split(":", 1)[0] + ":..."


def _first_line(exc: BaseException) -> str:
    return clip((str(exc).splitlines() or [type(exc).__name__])[0], 300)


def _is_psycopg_operational(orig: object) -> bool:
    module = type(orig).__module__
    return module.startswith("psycopg") and type(orig).__name__ == "OperationalError"


def transient(exc: SQLAlchemyError) -> bool:
    """Is ``exc`` a conflict with another transaction, or a connection lost, that the same
    transaction tried again may not meet?"""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    orig: Any = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) in TRANSIENT_SQLSTATES:  # psycopg
        return True
    if _is_psycopg_operational(orig) and orig.sqlstate is None:
        return True  # no SQLSTATE: the connection itself failed (refused while restarting)
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(orig, sqlite3.OperationalError) and code is not None:
        return code & 0xFF in SQLITE_BUSY
    return isinstance(orig, sqlite3.IntegrityError) and code in SQLITE_UNIQUE


def insert_new(table: Any, dialect: str, *key: str) -> Any:
    """``INSERT ... ON CONFLICT (key) DO NOTHING`` for rows keyed by content or name that
    another instance may insert at the same moment (certificates, endpoints, first
    baselines): the second insert waits for the first and then adds nothing, instead of
    failing the whole run."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]
    return dialect_insert(table).on_conflict_do_nothing(index_elements=list(key))


def out_of_space(exc: SQLAlchemyError) -> bool:
    """Is ``exc`` a full disk (SQLITE_FULL; PostgreSQL disk_full, out_of_memory)?"""
    orig: Any = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) in ("53100", "53200"):
        return True
    code = getattr(orig, "sqlite_errorcode", None)
    return isinstance(orig, sqlite3.OperationalError) and code is not None and code & 0xFF == 13


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # WAL with NORMAL sync: no corruption on a crash, one fsync per checkpoint instead of per
    # commit (a daemon of 20 000 endpoints commits ~70 times a second).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class Store:
    """Access to the database.  Create with :meth:`open`."""

    def __init__(
        self, engine: Engine, heartbeat: timedelta = HEARTBEAT, clock: Clock = utcnow
    ) -> None:
        self.engine = engine
        self.heartbeat = heartbeat
        # When a row was created or an attempt finished (bookkeeping); what a scan observed is
        # timed by the scan's own instant.
        self.clock = clock
        # A SQLite file deleted or replaced under an open connection keeps "working" on the
        # unlinked inode and everything written is lost at the next start: remember which file
        # this is and check before every session.
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        self.path = Path(database) if database and database != ":memory:" else None
        self.identity = self._identity()
        self.failing = False  # the last write ran out of tries (see retrying)

    @classmethod
    def open(cls, url: str, heartbeat: timedelta = HEARTBEAT, clock: Clock = utcnow) -> Store:
        """Connect, migrate to the newest schema, and return the store."""
        try:
            if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            connect_args = {"connect_timeout": 10} if url.startswith("postgresql") else {}
            engine = create_engine(url, connect_args=connect_args)
            if engine.dialect.name == "sqlite":
                event.listen(engine, "connect", _sqlite_pragmas)
            store = cls(engine, heartbeat, clock)
            store.migrate()
            store.identity = store._identity()  # the file exists once migrated
        except (SQLAlchemyError, OSError, ImportError, ValueError) as exc:
            raise StoreError(
                f"cannot open the store at {redact(url)}: {_first_line(exc)}; "
                "check [database] in the configuration"
            ) from exc
        return store

    def _identity(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None
        return info.st_dev, info.st_ino

    def check_file(self) -> None:
        """Raise :class:`StoreGoneError` when the SQLite file is no longer the one opened."""
        if self.path is None or self.identity is None:
            return
        now = self._identity()
        if now == self.identity:
            return
        what = "removed" if now is None else "replaced by another file"
        raise StoreGoneError(
            f"the database file {self.path} was {what} while relaycert was running; nothing "
            "more is written to it. Restore the file and restart relaycert (a new file is used "
            "from the next start)"
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to :data:`HEAD` (nothing to do, and no Alembic, when it is)."""
        with self.engine.connect() as connection:
            if inspect(connection).has_table("alembic_version"):
                current = connection.execute(text("SELECT version_num FROM alembic_version"))
                if [row[0] for row in current] == [HEAD]:
                    return
        from alembic import command
        from alembic.config import Config as AlembicConfig

        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            if self.dialect == "postgresql":
                # Several instances starting together: one migrates, the others wait here
                # (the lock ends with the transaction) and then find the schema at head.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATE_LOCK}
                )
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def close(self) -> None:
        self.engine.dispose()

    def _error(self, what: str, exc: SQLAlchemyError, written: bool) -> StoreError:
        tail = "; nothing of this run was stored" if written else "; check that the database is up"
        error = StoreError(
            f"{what} failed in {redact(str(self.engine.url))}: {_first_line(exc)}{tail}"
        )
        error.unavailable = transient(exc) or out_of_space(exc)
        return error

    @contextmanager
    def reading(self, what: str) -> Iterator[Session]:
        """A session for reads; a database error becomes a :class:`StoreError` about ``what``."""
        self.check_file()
        try:
            with Session(self.engine) as session:
                yield session
        except SQLAlchemyError as exc:
            raise self._error(what, exc, written=False) from exc

    @contextmanager
    def transaction(self, what: str, *, commit: bool = True) -> Iterator[Session]:
        """One transaction: committed when the block ends (rolled back instead with
        ``commit=False``, a dry run), rolled back and mapped to a :class:`StoreError` about
        ``what`` when the database fails."""
        self.check_file()
        try:
            with Session(self.engine) as session, session.begin() as transaction:
                yield session
                if not commit:
                    transaction.rollback()
        except SQLAlchemyError as exc:
            raise self._error(what, exc, written=True) from exc

    def retrying(self, what: str, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one transaction (as :meth:`transaction`); when it fails by a
        :func:`transient` error it is rolled back and run again from the start, up to
        :data:`ATTEMPTS` times in all.  ``work`` must therefore do nothing but database work
        (its reads are read again; an alert message is only enqueued in the outbox)."""
        # While the database is down (the last write ran out of tries and none has worked
        # since) a write is tried once: an outage fails fast, as before, instead of holding
        # every write for the whole series of pauses.
        attempts = 1 if self.failing else ATTEMPTS
        for attempt in range(1, attempts + 1):
            self.check_file()
            try:
                with Session(self.engine) as session, session.begin():
                    done = work(session)
                self.failing = False
                return done
            except SQLAlchemyError as exc:
                if not transient(exc):
                    self.failing = out_of_space(exc)  # a full disk: the next try is once
                    raise self._error(what, exc, written=True) from exc
                if attempt == attempts:
                    self.failing = True
                    raise self._error(what, exc, written=True) from exc
                pause = FIRST_PAUSE * 4 ** (attempt - 1) * random.uniform(0.5, 1.5)  # noqa: S311 (jitter)
                log_event(
                    log,
                    logging.WARNING,
                    "store.retry",
                    what=what,
                    attempt=attempt,
                    pause_s=round(pause, 2),
                    error=_first_line(exc),
                )
                time.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    def counts(self) -> dict[str, int]:
        """Row counts per table (for status output and tests)."""
        with self.reading("counting rows") as session:
            return {
                model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
                for model in (EndpointRow, CertificateRow, ObservationRow, FindingRow)
            }
