"""Migrations 0009 and 0010 on a store populated at 0008: the retention index covers resolved alerts only,
and on PostgreSQL stored sample events move from jsonb to json unchanged; both go back on a downgrade."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection

from auditflow.backends.store.engine import WRITE_OPTION, create_sync_engine
from auditflow.backends.store.migrate import alembic_config, current_revision, head_revision, upgrade_connection
from auditflow.backends.store.retention import _expired
from auditflow.backends.store.schema import alerts, to_ms
from auditflow.backends.store.sql import SqlAlertStore
from auditflow.model.event import Event
from tests.factories import T0, make_alert


@pytest.fixture
def url(empty_store_url: str) -> str:
    return empty_store_url


def _insert_at_0008(conn: Connection, alert_id: uuid.UUID, event: Event) -> None:
    ms = to_ms(T0)
    conn.execute(
        sa.text(
            "INSERT INTO alerts (alert_id, rule_id, rule_name, rule_kind, severity, severity_rank, status,"
            ' description, "group", user_id, server_hostname, first_seen, last_seen, occurrences, event_ids, tags,'
            " created_at, updated_at, opened_at) VALUES (:id, 'r', 'R', 'match', 'WARNING', 1, 'resolved', 'd',"
            " '{}', 'alice', 'web-1', :ms, :ms, 3, '[]', '[]', :ms, :ms, :ms)"
        ),
        {"id": alert_id.hex, "ms": ms},
    )
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("INSERT INTO alert_keys (alert_id, opened_at) VALUES (:id, :ms)"), {"id": alert_id, "ms": ms}
        )
    conn.execute(
        sa.text("INSERT INTO alert_events (alert_id, event_id, ts, payload, opened_at) VALUES (:a, :e, :ms, :p, :ms)"),
        {"a": alert_id.hex, "e": event.event_id.hex, "ms": ms, "p": event.model_dump_json()},
    )


def _payload_type(conn: Connection) -> str:
    query = (
        "SELECT data_type FROM information_schema.columns WHERE table_name = 'alert_events' AND column_name = 'payload'"
    )
    return str(conn.execute(sa.text(query)).scalar_one())


def _retention_index(conn: Connection) -> str:
    if conn.dialect.name == "postgresql":
        query = "SELECT indexdef FROM pg_indexes WHERE tablename = 'alerts' AND indexname = 'ix_alerts_retention'"
    else:
        query = "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'ix_alerts_retention'"
    return str(conn.execute(sa.text(query)).scalar_one())


async def test_a_store_at_0008_upgrades_and_downgrades(url: str) -> None:
    alert_id = uuid.uuid4()
    event = make_alert(first_seen=T0).sample_events[0]
    engine = create_sync_engine(url)
    try:
        with engine.connect() as raw:
            conn = raw.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                upgrade_connection(conn, "0008")
            with conn.begin():
                _insert_at_0008(conn, alert_id, event)
            with conn.begin():
                upgrade_connection(conn)
            with conn.begin():
                assert current_revision(conn) == head_revision() == "0010"
                index = _retention_index(conn)
                assert "severity, updated_at" in index.replace('"', "")
                assert "WHERE" in index.upper()
                assert "'resolved'" in index
                if conn.dialect.name == "postgresql":
                    assert _payload_type(conn) == "json"
    finally:
        engine.dispose()

    store = SqlAlertStore(url)
    await store.start()
    try:
        await store.check_schema()
        assert (await store.get_alert(alert_id)).events == [event]  # the stored document, unchanged
        redelivered = make_alert(alert_id, first_seen=T0, occurrences=5)
        fresh = make_alert(first_seen=T0)
        result = await store.upsert_alerts([redelivered, fresh])
        assert (result.inserted, result.updated) == (1, 1)
        assert (await store.get_alert(fresh.alert_id)).events == fresh.sample_events
        detail = await store.get_alert(alert_id)
        assert detail.status.value == "open"  # reopened: new occurrences on a resolved alert
        assert {stored.event_id for stored in detail.events} >= {event.event_id}
    finally:
        await store.aclose()

    engine = create_sync_engine(url)
    try:
        with engine.connect() as raw:
            conn = raw.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                command.downgrade(alembic_config(connection=conn), "0008")
            with conn.begin():
                assert current_revision(conn) == "0008"
                assert "WHERE" not in _retention_index(conn).upper()
                if conn.dialect.name == "postgresql":
                    assert _payload_type(conn) == "jsonb"
                    payloads = conn.execute(
                        sa.text("SELECT payload FROM alert_events WHERE event_id = :e"), {"e": event.event_id}
                    ).scalars()
                    assert [Event.model_validate(payload) for payload in payloads] == [event]
    finally:
        engine.dispose()


def test_retention_names_the_partial_index_condition_as_a_literal() -> None:
    """A bound parameter for the status would keep a generic plan from using ix_alerts_retention."""
    sql = str(_expired(alerts, "WARNING", 1).compile(compile_kwargs={"literal_binds": False}))
    assert "alerts.status = 'resolved'" in sql
