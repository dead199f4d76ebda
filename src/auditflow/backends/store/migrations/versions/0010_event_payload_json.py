"""Alert write path: sample events are stored as JSON text on PostgreSQL (`json`, was `jsonb`).

The documents are only ever read whole, never searched, and checking JSON text costs the server about
a third of converting it to jsonb, for every sample event written. The conversion rewrites
`alert_events` (every partition) under an exclusive lock, in about the time of copying it; writers of
the code before it send jsonb's binary form and fail against the new column, so the notification
service is stopped first (docs/operations/retention.md, "Migrations 0009 and 0010"). SQLite stores
JSON as text already: nothing changes there. See docs/scaling.md, "Alert persistence".

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE alert_events ALTER COLUMN payload TYPE json USING payload::json")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE alert_events ALTER COLUMN payload TYPE jsonb USING payload::jsonb")
