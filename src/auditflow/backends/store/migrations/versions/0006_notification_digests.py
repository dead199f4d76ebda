"""Notification digests: a digest is a delivery without an alert (status `open` while its window
collects changes), and its items are the changes it bundles.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
UUID = sa.Uuid(as_uuid=True)
OPEN = sa.text("status = 'open'")


def upgrade() -> None:
    # SQLite cannot alter a column in place: batch mode copies the table (it is small: sent rows are purged).
    with op.batch_alter_table("notification_deliveries") as batch:
        batch.alter_column("alert_id", existing_type=UUID, nullable=True)
    op.create_index(
        "ux_notification_deliveries_open_digest",
        "notification_deliveries",
        ["route", "channel"],
        unique=True,
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    )
    op.create_table(
        "notification_digest_items",
        sa.Column("item_id", UUID, primary_key=True),
        sa.Column("digest_id", UUID, nullable=False),
        sa.Column("alert_id", UUID, nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_notification_digest_items_digest_id", "notification_digest_items", ["digest_id"])
    op.create_index("ix_notification_digest_items_alert_id", "notification_digest_items", ["alert_id"])


def downgrade() -> None:
    op.drop_table("notification_digest_items")
    op.drop_index("ux_notification_deliveries_open_digest", "notification_deliveries")
    # Digest deliveries have no alert: they cannot stay in the older table.
    op.execute("DELETE FROM notification_deliveries WHERE alert_id IS NULL")
    with op.batch_alter_table("notification_deliveries") as batch:
        batch.alter_column("alert_id", existing_type=UUID, nullable=False)
