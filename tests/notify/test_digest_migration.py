"""Migration 0006 on SQLite and PostgreSQL: an outbox written at 0005 keeps its rows, digest rows
without an alert become possible, only one digest per route and channel can be open, and the downgrade
returns to 0005 without the digests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection

from auditflow.backends.store.engine import WRITE_OPTION, create_sync_engine
from auditflow.backends.store.migrate import alembic_config, current_revision, upgrade_connection


def row(**values: Any) -> dict[str, Any]:
    """A delivery row; ids as 32 hex digits, which SQLite stores and PostgreSQL casts to uuid."""
    return {
        "delivery_id": uuid.uuid4().hex,
        "alert_id": uuid.uuid4().hex,
        "route": "all",
        "channel": "soc",
        "event": "new",
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": 1,
        "payload": "{}",
        "created_at": 1,
        **values,
    }


INSERT = sa.text(
    "INSERT INTO notification_deliveries (delivery_id, alert_id, route, channel, event, status, attempts,"
    " next_attempt_at, payload, created_at) VALUES (:delivery_id, :alert_id, :route, :channel, :event, :status,"
    " :attempts, :next_attempt_at, :payload, :created_at)"
)


@pytest.fixture
def connection(database_url: str) -> Iterator[Connection]:
    engine = create_sync_engine(database_url)
    try:
        with engine.connect() as conn:
            yield conn.execution_options(**{WRITE_OPTION: True})
    finally:
        engine.dispose()


def test_an_outbox_at_0005_upgrades_and_downgrades(connection: Connection) -> None:
    conn = connection
    with conn.begin():
        upgrade_connection(conn, "0005")
    with conn.begin():
        conn.execute(INSERT, row())
    with conn.begin():
        upgrade_connection(conn, "0006")
    with conn.begin():
        assert current_revision(conn) == "0006"
        [(kept,)] = conn.execute(sa.text("SELECT route FROM notification_deliveries")).all()
        assert kept == "all"
        columns = {c["name"]: c for c in sa.inspect(conn).get_columns("notification_deliveries")}
        assert columns["alert_id"]["nullable"]
        conn.execute(INSERT, row(alert_id=None, event="digest", status="open"))
        conn.execute(INSERT, row(alert_id=None, event="digest", status="sent"))  # sealed ones: any number
        conn.execute(INSERT, row(alert_id=None, event="digest", status="sent"))
    with pytest.raises(sa.exc.IntegrityError), conn.begin():
        conn.execute(INSERT, row(alert_id=None, event="digest", status="open"))
    with conn.begin():
        command.downgrade(alembic_config(connection=conn), "0005")
    with conn.begin():
        assert current_revision(conn) == "0005"
        # The digests go (they have no alert); the single delivery stays.
        assert conn.execute(sa.text("SELECT event FROM notification_deliveries")).scalars().all() == ["new"]
        columns = {c["name"]: c for c in sa.inspect(conn).get_columns("notification_deliveries")}
        assert not columns["alert_id"]["nullable"]
        assert "notification_digest_items" not in sa.inspect(conn).get_table_names()
