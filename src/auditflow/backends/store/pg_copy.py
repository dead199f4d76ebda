"""PostgreSQL fast path: COPY the alerts of a batch into a session-local staging table, then one
INSERT ... SELECT ... ON CONFLICT; COPY the new sample events straight into their table. COPY
skips the statement parsing and parameter binding that dominate a multi-row INSERT."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from auditflow.backends.store.engine import json_dumps
from auditflow.backends.store.merge import conflict_updates
from auditflow.backends.store.schema import alert_events, alert_keys, alerts, to_ms
from auditflow.errors import BackendError, BackendUnavailable
from auditflow.model.alert import Alert
from auditflow.model.event import Event

STAGED_ALERTS = sa.Table(
    "alerts_incoming",
    sa.MetaData(),
    *(sa.Column(column.name, column.type) for column in alerts.c),
    prefixes=["TEMPORARY"],
)


def _alert_tuple(alert: Alert, now_ms: int) -> tuple[Any, ...]:
    """One COPY row in the column order of `alerts`; JSON goes as text, parsed by the server."""
    return (
        alert.alert_id,
        alert.rule_id,
        alert.rule_name,
        alert.rule_kind,
        alert.severity.value,
        alert.severity.rank,
        alert.status.value,
        alert.description,
        json_dumps(alert.group),
        alert.user_id,
        alert.server_hostname,
        to_ms(alert.first_seen),
        to_ms(alert.last_seen),
        alert.occurrences,
        json_dumps([str(event_id) for event_id in alert.event_ids]),
        json_dumps(alert.tags),
        now_ms,
        now_ms,
        to_ms(alert.first_seen),  # opened_at of a new alert; a known one keeps its own (alert_keys)
    )


async def _copy(conn: AsyncConnection, target: sa.Table, rows: Sequence[tuple[Any, ...]]) -> None:
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(column.name) for column in target.c)
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    try:
        async with driver.cursor() as cursor, cursor.copy(f"COPY {quote(target.name)} ({columns}) FROM STDIN") as copy:
            for row in rows:
                await copy.write_row(row)
    except psycopg.Error as error:
        # COPY runs on the raw driver connection, below SQLAlchemy's error wrapping: map it here.
        message = f"alert store COPY into {target.name} failed: {type(error).__name__}: {str(error).strip()[:200]}"
        if isinstance(error, psycopg.OperationalError) or driver.closed:
            raise BackendUnavailable(message) from error
        raise BackendError(message) from error


# The id's key row: inserted for a new id, locked but not rewritten for a known one (a false WHERE of
# DO UPDATE still locks), so a writer and retention never disagree about an id's `opened_at`. Only
# inserted rows are returned: they are the new alerts (keys and alerts are deleted together).
_TAKE_KEYS = sa.text(
    "INSERT INTO alert_keys (alert_id, opened_at) SELECT alert_id, opened_at FROM alerts_incoming"
    " ORDER BY alert_id ON CONFLICT (alert_id) DO UPDATE SET opened_at = alert_keys.opened_at WHERE false"
    " RETURNING alert_id"
).columns(alert_id=sa.Uuid(as_uuid=True))


async def upsert_alerts(
    conn: AsyncConnection, batch: Sequence[Alert], now_ms: int
) -> tuple[set[UUID], dict[UUID, int]]:
    """Upsert de-duplicated alerts; returns the ids that were inserted (not already stored) and every
    alert's `opened_at` (its partition key)."""
    quote = conn.dialect.identifier_preparer.quote
    # Created once per session; ON COMMIT DELETE ROWS empties it at the end of every transaction,
    # and IF NOT EXISTS keeps working behind a transaction-pooling proxy.
    await conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {quote(STAGED_ALERTS.name)} "
        f"(LIKE {quote(alerts.name)}) ON COMMIT DELETE ROWS"
    )
    await _copy(conn, STAGED_ALERTS, [_alert_tuple(alert, now_ms) for alert in batch])
    inserted = set((await conn.execute(_TAKE_KEYS)).scalars())
    staged = STAGED_ALERTS.c
    source = (
        sa.select(
            *(alert_keys.c.opened_at if column.name == "opened_at" else staged[column.name] for column in alerts.c)
        )
        .join_from(STAGED_ALERTS, alert_keys, alert_keys.c.alert_id == staged.alert_id)
        .order_by(staged.alert_id)
    )
    insert = pg_insert(alerts).from_select([column.name for column in alerts.c], source)
    statement = insert.on_conflict_do_update(
        # The partitioned table's primary key holds the partition key; alert_keys makes it one per id.
        index_elements=[alerts.c.alert_id, alerts.c.opened_at],
        set_=conflict_updates(insert.excluded, "postgresql"),
    ).returning(alerts.c.alert_id, alerts.c.opened_at)
    return inserted, {row.alert_id: row.opened_at for row in await conn.execute(statement)}


async def insert_events(
    conn: AsyncConnection, events: Sequence[tuple[UUID, Event]], opened: Mapping[UUID, int]
) -> None:
    """COPY straight into alert_events: no row can conflict, because every alert of the batch is
    locked by the upsert and its stored events were subtracted after taking that lock."""
    rows = [
        (alert_id, event.event_id, to_ms(event.timestamp), json_dumps(event.model_dump()), opened[alert_id])
        for alert_id, event in events
    ]
    await _copy(conn, alert_events, rows)
