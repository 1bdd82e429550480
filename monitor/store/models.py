"""The store's tables (SQLModel).  Every time is tz-aware UTC, on SQLite too.

Schema changes go through Alembic migrations in ``monitor/migrations``; a test checks that the
migrations and these models agree.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, LargeBinary, TypeDecorator, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

from monitor.clock import utcnow
from monitor.store.printable import PrintableJSON, PrintableText


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC; returns aware UTC datetimes (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class EndpointRow(SQLModel, table=True):
    __tablename__ = "endpoint"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    host: str = Field(max_length=255)
    port: int
    mode: str = Field(max_length=16)
    connector: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CertificateRow(SQLModel, table=True):
    """A certificate seen anywhere, once per SHA-256 fingerprint."""

    __tablename__ = "certificate"

    id: int | None = Field(default=None, primary_key=True)
    sha256: str = Field(max_length=64, unique=True)
    der: bytes = Field(sa_type=LargeBinary)
    subject: str = Field(sa_type=PrintableText)
    issuer: str = Field(sa_type=PrintableText)
    serial: str = Field(max_length=80)
    not_before: datetime = Field(sa_type=UTCDateTime)
    not_after: datetime = Field(sa_type=UTCDateTime)
    first_seen: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ObservationRow(SQLModel, table=True):
    """What probes of one address saw, stored on change: a probe that sees exactly what the
    previous row recorded (same ``signature``) only moves ``last_seen_at`` and counts a repeat,
    until the row is older than the heartbeat; then a new row is written anyway."""

    __tablename__ = "observation"
    __table_args__ = (
        Index("ix_observation_endpoint_address_time", "endpoint_id", "address", "started_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    endpoint_id: int = Field(foreign_key="endpoint.id")
    address: str = Field(max_length=64)
    # Which certificate: the listener's (from_exchange_online) or the client's (to_exchange_online)
    direction: str = Field(default="from_exchange_online", max_length=24)
    started_at: datetime = Field(sa_type=UTCDateTime)
    duration_ms: float
    status: str = Field(max_length=32)
    failed_step: str | None = Field(default=None, max_length=32)
    error: str | None = Field(default=None, sa_type=PrintableText)
    banner: str | None = Field(default=None, sa_type=PrintableText)
    ehlo: list[str] = Field(default_factory=list, sa_type=PrintableJSON)
    starttls_reply: str | None = Field(default=None, sa_type=PrintableText)
    tls_version: str | None = Field(default=None, max_length=16)
    cipher: str | None = Field(default=None, max_length=100)
    leaf_sha256: str | None = Field(default=None, max_length=64, index=True)
    chain: list[str] = Field(default_factory=list, sa_type=JSON)
    timings: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    worst: str | None = Field(default=None, max_length=16)
    signature: str = Field(default="", max_length=64)
    last_seen_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    repeats: int = 1
    # Outbound checks: the capture session (peer, EHLO name, envelope, token); never a body.
    session: dict[str, Any] | None = Field(default=None, sa_type=PrintableJSON)


class ProbeDayRow(SQLModel, table=True):
    """Probes attempted and succeeded per address and UTC day (monitoring availability)."""

    __tablename__ = "probe_day"
    __table_args__ = (UniqueConstraint("endpoint_id", "address", "day"),)

    id: int | None = Field(default=None, primary_key=True)
    endpoint_id: int = Field(foreign_key="endpoint.id")
    address: str = Field(max_length=64)
    day: date
    attempts: int = 0
    successes: int = 0


class FindingRow(SQLModel, table=True):
    __tablename__ = "finding"

    id: int | None = Field(default=None, primary_key=True)
    observation_id: int = Field(foreign_key="observation.id", index=True)
    rule: str = Field(max_length=64)
    severity: str = Field(max_length=16)
    message: str = Field(sa_type=PrintableText)


class BaselineRow(SQLModel, table=True):
    """The certificate last accepted for one endpoint address (drift is measured against it)."""

    __tablename__ = "baseline"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "address", "direction", name="uq_baseline_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    endpoint_id: int = Field(foreign_key="endpoint.id")
    address: str = Field(max_length=64)
    # Which certificate: the listener's (from_exchange_online) or the client's (to_exchange_online)
    direction: str = Field(default="from_exchange_online", max_length=24)
    sha256: str = Field(max_length=64)
    names: list[str] = Field(default_factory=list, sa_type=PrintableJSON)
    issuer: str = Field(sa_type=PrintableText)
    spki_sha256: str = Field(max_length=64)
    tls_version: str | None = Field(default=None, max_length=16)
    accepted_at: datetime = Field(sa_type=UTCDateTime)
    accepted_by: str = Field(max_length=16)  # initial | auto | manual


class AlertRow(SQLModel, table=True):
    """The lifecycle of one (endpoint address, rule) pair: pending, open, resolved."""

    __tablename__ = "alert"
    __table_args__ = (Index("ix_alert_open", "endpoint_id", "address", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    endpoint_id: int = Field(foreign_key="endpoint.id")
    address: str = Field(max_length=64)
    # Which certificate: the listener's (from_exchange_online) or the client's (to_exchange_online)
    direction: str = Field(default="from_exchange_online", max_length=24)
    rule: str = Field(max_length=64)
    severity: str = Field(max_length=16)
    status: str = Field(max_length=16)  # pending | open | resolved
    streak: int = 1
    message: str = Field(sa_type=PrintableText)
    first_seen: datetime = Field(sa_type=UTCDateTime)
    opened_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_notified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    transitions: int = 0


class OutboxRow(SQLModel, table=True):
    """A message written before it is sent; sent (or failed) only after the channel answered.

    ``dedup_key`` (alert, transition number, channel) is unique, so one transition can never be
    enqueued twice; ``claim_until`` leases the row to one sender at a time.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    dedup_key: str = Field(max_length=200, unique=True)
    channel: str = Field(max_length=100)
    alert_id: int | None = Field(default=None, foreign_key="alert.id")
    kind: str = Field(max_length=16)  # opened | escalated | reminder | resolved | test
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=PrintableJSON)
    status: str = Field(max_length=16)  # pending | sent | failed
    attempts: int = 0
    created_at: datetime = Field(sa_type=UTCDateTime)
    next_attempt_at: datetime = Field(sa_type=UTCDateTime)
    claim_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    claimed_by: str | None = Field(default=None, max_length=64)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_type=PrintableText)


class CaptureRow(SQLModel, table=True):
    """A message the capture listener received that no outbound check was waiting for (an
    admin's test send, a late probe, a stray): its session (with ``kind`` and ``reason``),
    never its body.  ``endpoint`` is set only for a late probe of that endpoint's own check,
    attributed by its signed token; ``None`` is an unattributed capture."""

    __tablename__ = "capture"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=UTCDateTime, index=True)
    peer: str = Field(max_length=64)
    ehlo: str | None = Field(default=None, sa_type=PrintableText)
    tls_version: str | None = Field(default=None, max_length=16)
    leaf_sha256: str | None = Field(default=None, max_length=64)
    endpoint: str | None = Field(default=None, max_length=200)
    worst: str | None = Field(default=None, max_length=16)
    session: dict[str, Any] = Field(default_factory=dict, sa_type=PrintableJSON)


class RenewalRow(SQLModel, table=True):
    """One renewal attempt: the order, the old and new certificates, and how it ended."""

    __tablename__ = "renewal"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, index=True)
    started_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    order_url: str | None = Field(default=None, sa_type=PrintableText)
    old_sha256: str | None = Field(default=None, max_length=64)
    new_sha256: str | None = Field(default=None, max_length=64)
    # verified | deployed | dry_run | skipped | gate_refused | hook_failed | not_served | failed
    outcome: str = Field(max_length=16)
    detail: str | None = Field(default=None, sa_type=PrintableText)


class InstanceRow(SQLModel, table=True):
    """One running ``relaycert run`` (one row per process start), with its heartbeat."""

    __tablename__ = "instance"

    id: str = Field(primary_key=True, max_length=36)  # a UUID per process start
    name: str = Field(max_length=200)
    site: str | None = Field(default=None, max_length=200)
    version: str = Field(max_length=40)
    host: str = Field(max_length=255)
    pid: int
    started_at: datetime = Field(sa_type=UTCDateTime)
    heartbeat_at: datetime = Field(sa_type=UTCDateTime, index=True)
    stopped_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ClaimRow(SQLModel, table=True):
    """Who runs a piece of scheduled work next (``endpoint:NAME``, ``report``, ...): whoever
    first finds ``due_at`` passed takes it with one conditional UPDATE and moves ``due_at`` on,
    so a run happens on one instance however many are scheduled to try."""

    __tablename__ = "claim"

    key: str = Field(primary_key=True, max_length=260)
    due_at: datetime = Field(sa_type=UTCDateTime)
    owner: str | None = Field(default=None, max_length=36)
    claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
