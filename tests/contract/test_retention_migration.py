"""Migration 0007 on a store populated at 0006: on PostgreSQL alerts and events move into monthly
partitions (with the indexes the API uses, a key row per alert, history kept without its foreign key),
on SQLite the rows gain `opened_at`; afterwards the store reads, merges and runs retention as usual."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from auditflow.backends.store import partitions
from auditflow.backends.store.engine import WRITE_OPTION, create_sync_engine
from auditflow.backends.store.migrate import current_revision, head_revision, upgrade_connection
from auditflow.backends.store.retention import run_retention
from auditflow.backends.store.schema import to_ms
from auditflow.backends.store.sql import SqlAlertStore
from auditflow.model.alert import AlertQuery
from auditflow.model.event import Severity
from tests.factories import make_alert

MARCH, APRIL = datetime(2025, 3, 5, tzinfo=UTC), datetime(2025, 4, 7, tzinfo=UTC)


@pytest.fixture
def url(empty_store_url: str) -> str:
    return empty_store_url


def as_uuid(value: Any) -> uuid.UUID:
    """A raw query's uuid: native on PostgreSQL, 32 hex digits on SQLite."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


def insert_alert(conn: Connection, alert_id: uuid.UUID, first_seen: datetime, status: str = "resolved") -> None:
    ms = to_ms(first_seen)
    conn.execute(
        sa.text(
            "INSERT INTO alerts (alert_id, rule_id, rule_name, rule_kind, severity, severity_rank, status,"
            ' description, "group", user_id, server_hostname, first_seen, last_seen, occurrences, event_ids, tags,'
            " created_at, updated_at) VALUES (:id, 'r', 'R', 'match', 'WARNING', 1, :status, 'd', '{}', 'alice',"
            " 'web-1', :ms, :ms, 3, :ids, '[]', :ms, :ms)"
        ),
        {"id": alert_id.hex, "status": status, "ms": ms, "ids": json.dumps([])},
    )
    event = make_alert(first_seen=first_seen).sample_events[0]
    conn.execute(
        sa.text("INSERT INTO alert_events (alert_id, event_id, ts, payload) VALUES (:a, :e, :ts, :p)"),
        {"a": alert_id.hex, "e": event.event_id.hex, "ts": ms, "p": event.model_dump_json()},
    )
    conn.execute(
        sa.text("INSERT INTO alert_history (alert_id, at, actor, to_status) VALUES (:a, :at, 'ana', :s)"),
        {"a": alert_id.hex, "at": ms, "s": status},
    )


async def test_a_store_at_0006_is_converted(url: str) -> None:
    march, april, open_april = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    engine = create_sync_engine(url)
    try:
        with engine.connect() as raw:
            conn = raw.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                upgrade_connection(conn, "0006")
            with conn.begin():
                insert_alert(conn, march, MARCH)
                insert_alert(conn, april, APRIL)
                insert_alert(conn, open_april, APRIL, status="open")
                conn.execute(
                    sa.text("INSERT INTO alert_events (alert_id, event_id, ts, payload) VALUES (:a, :e, 1, '{}')"),
                    {"a": uuid.uuid4().hex, "e": uuid.uuid4().hex},  # evidence of an alert deleted long ago
                )
            with conn.begin():
                upgrade_connection(conn)
            with conn.begin():
                assert current_revision(conn) == head_revision() == "0010"
                rows = conn.execute(sa.text("SELECT alert_id, opened_at, first_seen FROM alerts")).all()
                assert {(as_uuid(row[0]), row[1]) for row in rows} == {
                    (march, to_ms(MARCH)),
                    (april, to_ms(APRIL)),
                    (open_april, to_ms(APRIL)),
                }
                events = conn.execute(sa.text("SELECT alert_id, opened_at FROM alert_events")).all()
                assert len(conn.execute(sa.text("SELECT id FROM alert_history")).all()) == 3
                assert sa.inspect(conn).get_foreign_keys("alert_history") == []
                if conn.dialect.name == "postgresql":
                    assert partitions.is_partitioned(conn)
                    # The orphaned event had nothing to be kept for.
                    assert {as_uuid(row[0]) for row in events} == {march, april, open_april}
                    where: dict[uuid.UUID, str] = dict(
                        conn.execute(sa.text("SELECT alert_id, tableoid::regclass::text FROM alerts")).all()
                    )
                    assert where == {march: "alerts_p202503", april: "alerts_p202504", open_april: "alerts_p202504"}
                    months = {partition.month for partition in partitions.monthly_partitions(conn, "alert_events")}
                    now = partitions.months_ahead(int(datetime.now(UTC).timestamp() * 1000))
                    assert {(2025, 3), (2025, 4), *now} <= months
                    keys: dict[uuid.UUID, int] = dict(
                        conn.execute(sa.text("SELECT alert_id, opened_at FROM alert_keys")).all()
                    )
                    assert keys == {march: to_ms(MARCH), april: to_ms(APRIL), open_april: to_ms(APRIL)}
                    indexes = {index["name"] for index in sa.inspect(conn).get_indexes("alerts")}
                    assert {"ix_alerts_severity", "ix_alerts_first_seen", "ix_alerts_retention"} <= indexes
                    definitions = conn.execute(
                        sa.text("SELECT indexdef FROM pg_indexes WHERE tablename = 'alerts_p202504'")
                    ).scalars()
                    # The API's indexes exist on every partition.
                    assert any("(severity, first_seen DESC, alert_id DESC)" in text for text in definitions)
                else:
                    assert {(as_uuid(row[0]), row[1]) for row in events} >= {
                        (march, to_ms(MARCH)),
                        (april, to_ms(APRIL)),
                    }
    finally:
        engine.dispose()

    store = SqlAlertStore(url)
    await store.start()
    try:
        page = await store.list_alerts(AlertQuery(severity=[Severity.WARNING], limit=10))
        listed = [item.alert_id for item in page.items]
        assert set(listed) == {open_april, april, march}
        assert listed[-1] == march
        assert len((await store.get_alert(march)).history) == 1
        # A redelivery of a converted alert merges into its row.
        redelivered = make_alert(march, first_seen=MARCH, occurrences=9, severity=Severity.WARNING)
        result = await store.upsert_alerts([redelivered])
        assert (result.inserted, result.updated) == (0, 1)
        assert await store.count() == 3
        now_ms = to_ms(datetime(2025, 12, 1, tzinfo=UTC))
        report = await run_retention(store, {"WARNING": 30}, now_ms=now_ms)
        assert report.removed["WARNING"]["alerts"] == 1  # april; march was just reopened, open_april is open
        assert await store.count() == 2
    finally:
        await store.aclose()
