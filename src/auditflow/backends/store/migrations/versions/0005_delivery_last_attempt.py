"""Notification outbox: when a delivery was last attempted, so that a channel's last error has a time.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("notification_deliveries", sa.Column("last_attempt_at", sa.BigInteger(), nullable=True))
    # The sent rows know their attempt time already.
    op.execute("UPDATE notification_deliveries SET last_attempt_at = sent_at WHERE sent_at IS NOT NULL")


def downgrade() -> None:
    op.drop_column("notification_deliveries", "last_attempt_at")
