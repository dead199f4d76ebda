"""Alert retention: every alert gets an immutable `opened_at` (the first_seen it was first written
with), its events carry it too, and `alert_keys` maps each alert id to it. On PostgreSQL `alerts`
and `alert_events` become tables partitioned by month of `opened_at` (rows moved, indexes rebuilt,
partitions for every month that holds alerts, the next months and a default one); an event whose
alert is gone (nothing references it any more) is not moved. alert_history loses its foreign key,
which a partitioned alerts table cannot serve; retention deletes history with its alert. Both
dialects get the index retention searches by.

The PostgreSQL conversion rewrites both tables in one transaction: it takes about as long as copying
them and holds them exclusively meanwhile (docs/operations/retention.md).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import context, op

from auditflow.backends.store import partitions

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

UUID = sa.Uuid(as_uuid=True)
FILTERED_COLUMNS = ("severity", "rule_id", "status", "user_id", "server_hostname")


def _alert_indexes() -> None:
    for name in (*FILTERED_COLUMNS, None):
        columns = [name] if name else []
        op.create_index(
            f"ix_alerts_{name or 'first_seen'}",
            "alerts",
            [*columns, sa.text("first_seen DESC"), sa.text("alert_id DESC")],
        )
    op.create_index("ix_alerts_retention", "alerts", ["status", "updated_at"])


def _drop_history_foreign_key() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # The name PostgreSQL gave the unnamed constraint of 0001.
        op.execute("ALTER TABLE alert_history DROP CONSTRAINT IF EXISTS alert_history_alert_id_fkey")
    else:
        # SQLite cannot drop a constraint: the table is copied without it (history is small).
        op.execute("ALTER TABLE alert_history RENAME TO alert_history_0006")
        op.drop_index("ix_alert_history_alert_id", "alert_history_0006")
        op.create_table(
            "alert_history",
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("alert_id", UUID, nullable=False),
            sa.Column("at", sa.BigInteger(), nullable=False),
            sa.Column("actor", sa.String(255), nullable=False),
            sa.Column("from_status", sa.String(16), nullable=True),
            sa.Column("to_status", sa.String(16), nullable=True),
            sa.Column("note", sa.Text(), nullable=True),
        )
        op.execute("INSERT INTO alert_history SELECT * FROM alert_history_0006")
        op.drop_table("alert_history_0006")
        op.create_index("ix_alert_history_alert_id", "alert_history", ["alert_id"])


def _keys_table() -> None:
    op.create_table(
        "alert_keys",
        sa.Column("alert_id", UUID, primary_key=True),
        sa.Column("opened_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_alert_keys_opened_at", "alert_keys", ["opened_at"])


def _upgrade_sqlite() -> None:
    # The default only fills the existing rows here: every write names opened_at.
    op.add_column("alerts", sa.Column("opened_at", sa.BigInteger(), nullable=False, server_default="0"))
    op.execute("UPDATE alerts SET opened_at = first_seen")
    op.add_column("alert_events", sa.Column("opened_at", sa.BigInteger(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE alert_events SET opened_at = COALESCE("
        "(SELECT alerts.opened_at FROM alerts WHERE alerts.alert_id = alert_events.alert_id), 0)"
    )
    op.create_index("ix_alerts_retention", "alerts", ["status", "updated_at"])


def _upgrade_postgresql() -> None:
    # The old tables step aside under other names, with the names of their keys freed.
    op.execute("ALTER TABLE alerts RENAME TO alerts_0006")
    op.execute("ALTER TABLE alerts_0006 RENAME CONSTRAINT alerts_pkey TO alerts_0006_pkey")
    op.execute("ALTER TABLE alert_events RENAME TO alert_events_0006")
    op.execute("ALTER TABLE alert_events_0006 RENAME CONSTRAINT alert_events_pkey TO alert_events_0006_pkey")
    for name in (*FILTERED_COLUMNS, "first_seen"):
        op.execute(f"DROP INDEX ix_alerts_{name}")
    op.execute(
        "CREATE TABLE alerts (LIKE alerts_0006 INCLUDING DEFAULTS, opened_at BIGINT NOT NULL,"
        " PRIMARY KEY (alert_id, opened_at)) PARTITION BY RANGE (opened_at)"
    )
    op.execute(
        "CREATE TABLE alert_events (LIKE alert_events_0006 INCLUDING DEFAULTS, opened_at BIGINT NOT NULL,"
        " PRIMARY KEY (alert_id, event_id, opened_at)) PARTITION BY RANGE (opened_at)"
    )
    months = set(partitions.months_ahead(int(time.time() * 1000)))
    if not context.is_offline_mode():  # a rendered script has the months ahead and the default only
        stored = op.get_bind().execute(sa.text("SELECT DISTINCT first_seen / 86400000 FROM alerts_0006")).scalars()
        months.update(partitions.month_of(int(day) * 86_400_000) for day in stored)
    for table in partitions.PARTITIONED:
        op.execute(f"CREATE TABLE {partitions.default_name(table)} PARTITION OF {table} DEFAULT")
        for month in sorted(months):
            low, high = partitions.month_bounds(month)
            name = partitions.partition_name(table, month)
            op.execute(f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM ({low}) TO ({high})")
    op.execute("INSERT INTO alerts SELECT *, first_seen FROM alerts_0006")
    op.execute(
        "INSERT INTO alert_events SELECT e.*, a.first_seen FROM alert_events_0006 e"
        " JOIN alerts_0006 a ON a.alert_id = e.alert_id"
    )
    _keys_table()
    op.execute("INSERT INTO alert_keys SELECT alert_id, first_seen FROM alerts_0006")
    op.drop_table("alert_events_0006")
    op.drop_table("alerts_0006")
    _alert_indexes()


def upgrade() -> None:
    _drop_history_foreign_key()
    if op.get_bind().dialect.name == "postgresql":
        _upgrade_postgresql()
    else:
        _keys_table()
        _upgrade_sqlite()


def downgrade() -> None:
    raise NotImplementedError("0007 cannot be undone in place: restore the backup taken before the upgrade")
