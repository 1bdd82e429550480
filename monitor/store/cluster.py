"""Several daemons on one store: instances with heartbeats, claims on scheduled work, and
exclusive locks (PostgreSQL advisory locks; a lock file beside a SQLite database).

A claim is one conditional UPDATE (``due_at <= now``) that moves ``due_at`` on: under
PostgreSQL's row locking two instances trying at once serialise, and the second finds the row
no longer due.  Times are the instances' clocks (keep them synchronised, NTP), compared with a
tolerance of seconds, never milliseconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select, text, update
from sqlmodel import Session, col

from monitor.errors import StoreError
from monitor.store.engine import Store, insert_new
from monitor.store.models import ClaimRow, InstanceRow

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def register(store: Store, row: InstanceRow) -> None:
    with store.transaction("registering this instance") as session:
        session.add(row)


def beat(store: Store, instance_id: str, now: datetime) -> None:
    statement = (
        update(InstanceRow).where(col(InstanceRow.id) == instance_id).values(heartbeat_at=now)
    )
    store.retrying("writing the heartbeat", lambda session: session.execute(statement))


def stopped(store: Store, instance_id: str, now: datetime) -> None:
    with store.transaction("recording that this instance stopped") as session:
        session.execute(
            update(InstanceRow)
            .where(col(InstanceRow.id) == instance_id)
            .values(stopped_at=now, heartbeat_at=now)
        )


def instances(store: Store, since: datetime) -> list[InstanceRow]:
    """Instances whose last heartbeat is after ``since`` (newest first)."""
    with store.reading("listing instances") as session:
        rows = session.scalars(
            select(InstanceRow)
            .where(col(InstanceRow.heartbeat_at) >= since)
            .order_by(col(InstanceRow.heartbeat_at).desc())
        ).all()
        session.expunge_all()
        return list(rows)


def claim(store: Store, key: str, owner: str, now: datetime, next_due: datetime) -> bool:
    """Take the work ``key`` if it is due (it is the first time it is asked for, or ``due_at``
    has passed); it is due again at ``next_due``.  True on exactly one instance per due time."""
    first = insert_new(ClaimRow.__table__, store.dialect, "key").values(key=key, due_at=EPOCH)  # type: ignore[attr-defined]
    take = (
        update(ClaimRow)
        .where(col(ClaimRow.key) == key, col(ClaimRow.due_at) <= now)
        .values(due_at=next_due, owner=owner, claimed_at=now)
    )

    def work(session: Session) -> bool:
        session.execute(first)
        return bool(session.execute(take).rowcount == 1)  # type: ignore[attr-defined]

    return store.retrying(f"claiming {key}", work)


def _lock_path(store: Store, key: str) -> str | None:
    if store.path is None:
        return None
    return f"{store.path}.{re.sub(r'[^A-Za-z0-9_.-]', '_', key)}.lock"


@contextlib.contextmanager
def exclusive(store: Store, key: str) -> Iterator[bool]:
    """Hold the lock ``key`` for the block if no one else (any instance, any process) holds
    it; yields whether it was taken.  PostgreSQL: a session advisory lock on its own
    connection; SQLite: ``flock`` on a file beside the database."""
    if store.dialect == "postgresql":
        number = "hashtextextended(:key, 0)"
        with contextlib.ExitStack() as stack:
            with _mapped(key, "taken"):  # only the lock's own statements are mapped here
                connection = stack.enter_context(store.engine.connect())
                taken = connection.execute(
                    text(f"SELECT pg_try_advisory_lock({number})"), {"key": key}
                ).scalar()
            try:
                yield bool(taken)
            finally:
                if taken:
                    with _mapped(key, "given back"):
                        unlock = text(f"SELECT pg_advisory_unlock({number})")
                        connection.execute(unlock, {"key": key})
                        connection.commit()
        return
    path = _lock_path(store, key)
    if path is None:  # an in-memory database belongs to one process
        yield True
        return
    with _flock(path) as taken:
        yield taken


@contextlib.contextmanager
def _mapped(key: str, how: str) -> Iterator[None]:
    """The database failing while the lock ``key`` is taken or given back: a StoreError."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except SQLAlchemyError as exc:
        error = StoreError(f"the lock '{key}' cannot be {how}: {type(exc).__name__}")
        error.unavailable = True
        raise error from exc


@contextlib.contextmanager
def _flock(path: str) -> Iterator[bool]:
    try:  # `status` of the group reads the pid
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    except OSError as exc:
        error = StoreError(f"the lock file {path} cannot be opened: {exc.strerror}")
        error.unavailable = True
        raise error from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        # The pid is for `status` only: a full disk must not fail the lock that flock holds.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        try:
            yield True
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # no pid left behind: nobody holds it now
    finally:
        os.close(fd)  # closing releases the lock


def daemon_holds_lock(store: Store) -> bool:
    """SQLite: whether a ``relaycert run`` holds this database's daemon lock now (it does for
    its whole life, :func:`single_daemon`, and writes its pid into the lock file).  Read
    without locking, so a status call can never stop a daemon from starting.  PostgreSQL:
    see the instance table."""
    path = _lock_path(store, "daemon")
    if store.dialect == "postgresql" or path is None:
        return False
    try:
        pid = int(Path(path).read_text().strip() or 0)
    except (OSError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


@contextlib.contextmanager
def single_daemon(store: Store) -> Iterator[None]:
    """On SQLite, refuse a second ``relaycert run`` on the same database file (several
    instances need PostgreSQL); on PostgreSQL, nothing to hold."""
    path = _lock_path(store, "daemon")
    if store.dialect == "postgresql" or path is None:
        yield
        return
    with _flock(path) as taken:
        if not taken:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = f" (pid {int(Path(path).read_text().strip())})"
            raise StoreError(
                f"another relaycert run{holder} already uses the SQLite store {store.path}; "
                "SQLite serves one instance: stop the other one, or give every instance the "
                "same PostgreSQL [database] url to run several"
            )
        yield
