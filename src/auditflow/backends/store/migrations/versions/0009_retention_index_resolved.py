"""Alert write path: the retention index covers only resolved alerts.

`ix_alerts_retention` was (status, updated_at) over every alert, so every new alert added an entry to it;
retention only ever looks for resolved alerts of one severity changed before a cutoff, so it becomes
(severity, updated_at) WHERE status = 'resolved'. See docs/scaling.md, "Alert persistence".

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

RESOLVED = sa.text("status = 'resolved'")


def upgrade() -> None:
    op.drop_index("ix_alerts_retention", "alerts")
    op.create_index(
        "ix_alerts_retention",
        "alerts",
        ["severity", "updated_at"],
        postgresql_where=RESOLVED,
        sqlite_where=RESOLVED,
    )


def downgrade() -> None:
    op.drop_index("ix_alerts_retention", "alerts")
    op.create_index("ix_alerts_retention", "alerts", ["status", "updated_at"])
