"""Alert write path: the status index holds only triaged alerts (acknowledged, resolved).

Every new alert is open, so an index over all statuses took an entry per insert for a filter that
the first_seen index serves as well: the open alerts are the newest ones. The triaged statuses keep
an index for their filters. See docs/scaling.md, "Alert persistence".

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

SORT_KEY = [sa.text("first_seen DESC"), sa.text("alert_id DESC")]
TRIAGED = sa.text("status <> 'open'")


def upgrade() -> None:
    op.drop_index("ix_alerts_status", "alerts")
    op.create_index(
        "ix_alerts_status_triaged",
        "alerts",
        ["status", *SORT_KEY],
        postgresql_where=TRIAGED,
        sqlite_where=TRIAGED,
    )


def downgrade() -> None:
    op.drop_index("ix_alerts_status_triaged", "alerts")
    op.create_index("ix_alerts_status", "alerts", ["status", *SORT_KEY])
