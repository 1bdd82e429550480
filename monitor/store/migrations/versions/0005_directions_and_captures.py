"""directions (served and client certificate) and passive captures

Observations, alerts and baselines say which certificate they are about: the one the listener
serves (from_exchange_online, every existing row) or the client certificate seen by the capture
listener (to_exchange_online).  The baseline's unique key gains the direction, so the table is
copied (SQLite cannot drop an unnamed constraint in place).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SERVED = "from_exchange_online"
BASELINE_COLUMNS = (
    "id",
    "endpoint_id",
    "address",
    "sha256",
    "names",
    "issuer",
    "spki_sha256",
    "tls_version",
    "accepted_at",
    "accepted_by",
)


def _copy(source: str, target: str, *, add_direction: bool) -> None:
    """Copy the baselines from ``source`` to ``target`` (adding or keeping only the served
    direction)."""
    names = list(BASELINE_COLUMNS)
    old = sa.table(source, *(sa.column(c) for c in [*names, "direction"]))
    new = sa.table(target, *(sa.column(c) for c in [*names, "direction"]))
    columns = [old.c[c] for c in names]
    if add_direction:
        query = sa.select(*columns, sa.literal(SERVED))
        op.execute(new.insert().from_select([*names, "direction"], query))
    else:
        query = sa.select(*columns).where(old.c.direction == SERVED)
        op.execute(new.insert().from_select(names, query))


def _direction() -> sa.Column[str]:
    return sa.Column("direction", sa.String(length=24), nullable=False, server_default=SERVED)


def _baseline(name: str, with_direction: bool) -> None:
    columns: list[sa.schema.SchemaItem] = [
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("names", sa.JSON(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("spki_sha256", sa.String(length=64), nullable=False),
        sa.Column("tls_version", sa.String(length=16), nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_by", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["endpoint_id"], ["endpoint.id"]),
        sa.PrimaryKeyConstraint("id"),
    ]
    if with_direction:
        columns.insert(3, _direction())
        columns.append(
            sa.UniqueConstraint("endpoint_id", "address", "direction", name="uq_baseline_key")
        )
    else:
        columns.append(sa.UniqueConstraint("endpoint_id", "address"))
    op.create_table(name, *columns)


def upgrade() -> None:
    for table in ("observation", "alert"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(_direction())
    with op.batch_alter_table("observation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session", sa.JSON(), nullable=True))

    _baseline("baseline_v5", with_direction=True)
    _copy("baseline", "baseline_v5", add_direction=True)
    op.drop_table("baseline")
    op.rename_table("baseline_v5", "baseline")

    op.create_table(
        "capture",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("peer", sa.String(length=64), nullable=False),
        sa.Column("ehlo", sa.Text(), nullable=True),
        sa.Column("tls_version", sa.String(length=16), nullable=True),
        sa.Column("leaf_sha256", sa.String(length=64), nullable=True),
        sa.Column("endpoint", sa.String(length=200), nullable=True),
        sa.Column("worst", sa.String(length=16), nullable=True),
        sa.Column("session", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("capture", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_capture_at"), ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("capture", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_capture_at"))
    op.drop_table("capture")

    _baseline("baseline_v4", with_direction=False)
    _copy("baseline", "baseline_v4", add_direction=False)
    op.drop_table("baseline")
    op.rename_table("baseline_v4", "baseline")

    for table in ("observation", "alert"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("direction")
    with op.batch_alter_table("observation", schema=None) as batch_op:
        batch_op.drop_column("session")
