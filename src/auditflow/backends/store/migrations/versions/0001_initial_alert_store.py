"""Initial alert store: alerts, their sample events and their triage history.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# Frozen copies of the column types, so later changes to the live schema never alter this revision.
JSON = sa.JSON().with_variant(JSONB(), "postgresql")
UUID = sa.Uuid(as_uuid=True)
FILTERED_COLUMNS = ("severity", "rule_id", "status", "user_id", "server_hostname")


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("alert_id", UUID, primary_key=True),
        sa.Column("rule_id", sa.String(128), nullable=False),
        sa.Column("rule_name", sa.String(255), nullable=False),
        sa.Column("rule_kind", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("severity_rank", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("group", JSON, nullable=False),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("server_hostname", sa.String(255), nullable=True),
        sa.Column("first_seen", sa.BigInteger(), nullable=False),
        sa.Column("last_seen", sa.BigInteger(), nullable=False),
        sa.Column("occurrences", sa.BigInteger(), nullable=False),
        sa.Column("event_ids", JSON, nullable=False),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )
    sort_key = [sa.text("first_seen DESC"), sa.text("alert_id DESC")]
    for column in FILTERED_COLUMNS:
        op.create_index(f"ix_alerts_{column}", "alerts", [column, *sort_key])
    op.create_index("ix_alerts_first_seen", "alerts", sort_key)

    op.create_table(
        "alert_events",
        sa.Column("alert_id", UUID, primary_key=True),  # no foreign key: see schema.py
        sa.Column("event_id", UUID, primary_key=True),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("payload", JSON, nullable=False),
    )

    op.create_table(
        "alert_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("alert_id", UUID, sa.ForeignKey("alerts.alert_id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=True),
        sa.Column("to_status", sa.String(16), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
    )
    op.create_index("ix_alert_history_alert_id", "alert_history", ["alert_id"])


def downgrade() -> None:
    op.drop_table("alert_history")
    op.drop_table("alert_events")
    op.drop_table("alerts")
