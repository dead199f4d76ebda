"""PostgreSQL fast path for a batch of alerts, inside the caller's transaction:

1. the ids' key rows (`alert_keys`), from two array parameters: inserted for new ids, which tells the
   new alerts, and locked for known ones; one statement, which returns the known ids only;
2. binary COPY of the new alerts straight into `alerts`: nothing stored can conflict with them, and
   nothing about them is read back;
3. only when the batch has known alerts: binary COPY of those into a session-local staging table
   (`alerts_incoming`), whose rows then take their stored `opened_at` (the partition key); the stored
   rows the batch needs to know about, read (and locked, in id order) by a join with that table; one
   INSERT ... SELECT ... ON CONFLICT from it;
4. binary COPY of the new sample events straight into `alert_events`.

Binary COPY sends integers and UUIDs in their wire form and every JSON document as bytes encoded
once, by orjson, from the models' values; text COPY had psycopg escape each of them again. The
match between an incoming and a stored alert is `PG_CONFLICT_TARGET` everywhere here: the alerts table is
partitioned by month of `opened_at`, so its unique key holds that column too."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import orjson
import psycopg
import sqlalchemy as sa
from psycopg.adapt import Dumper
from psycopg.pq import Format
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.ext.asyncio import AsyncConnection

from auditflow.backends.store.merge import conflict_updates
from auditflow.backends.store.schema import alert_events, alert_keys, alerts, to_ms
from auditflow.errors import BackendError, BackendUnavailable, SchemaNotReady
from auditflow.model.alert import Alert
from auditflow.model.event import Event

# The partitioned table's primary key holds the partition key; alert_keys makes it one per id.
PG_CONFLICT_TARGET: tuple[sa.Column[Any], ...] = (alerts.c.alert_id, alerts.c.opened_at)

_DIALECT = PGDialect()  # type: ignore[no-untyped-call]  # resolves the schema's PostgreSQL variants (JSONB)

STAGED_ALERTS = sa.Table(
    "alerts_incoming",
    sa.MetaData(),
    *(sa.Column(column.name, column.type) for column in alerts.c),
    prefixes=["TEMPORARY"],
)

# Binary COPY carries no type information: each value must be in the exact wire form of its column.
# Subclasses before their bases (JSONB is a JSON, SmallInteger and BigInteger are Integers, Text is a
# String); a column's type as PostgreSQL's variant of it.
_WIRE_TYPES: tuple[tuple[type[sa.types.TypeEngine[Any]], str], ...] = (
    (sa.Uuid, "uuid"),
    (JSONB, "jsonb"),
    (sa.JSON, "json"),
    (sa.SmallInteger, "int2"),
    (sa.BigInteger, "int8"),
    (sa.Integer, "int4"),
    (sa.Text, "text"),
    (sa.String, "varchar"),
)


def wire_types(table: sa.Table) -> list[str]:
    """The PostgreSQL type of every column of `table`, in column order (a type not listed fails here)."""
    types = [column.type.dialect_impl(_DIALECT) for column in table.c]
    return [next(name for kind, name in _WIRE_TYPES if isinstance(type_, kind)) for type_ in types]


class _EncodedJsonb(Dumper):
    """A JSON document already encoded as UTF-8 bytes, in jsonb's binary form (version 1, then the text)."""

    format = Format.BINARY
    oid = psycopg.postgres.types["jsonb"].oid

    def dump(self, obj: bytes) -> bytes:
        return b"\x01" + obj


class _EncodedJson(Dumper):
    """A JSON document already encoded as UTF-8 bytes: json's binary form is the text itself."""

    format = Format.BINARY
    oid = psycopg.postgres.types["json"].oid

    def dump(self, obj: bytes) -> bytes:
        return obj


def json_bytes(value: Any) -> bytes:
    """Compact JSON as the engine's serializer writes it (datetimes with `Z`, UUIDs as strings)."""
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


def event_payload(event: Event) -> bytes:
    """The stored payload of a sample event: the same document as `json_bytes(event.model_dump())`
    (no field of `Event` serializes differently in Python mode), encoded in one orjson call
    from the model's values instead of through a copy of them."""
    return orjson.dumps(event.__dict__, option=orjson.OPT_UTC_Z)


def alert_values(alert: Alert, now_ms: int) -> tuple[Any, ...]:
    """One COPY row of `alerts` (and of its staging table), in column order."""
    first_seen = to_ms(alert.first_seen)
    return (
        alert.alert_id,
        alert.rule_id,
        alert.rule_name,
        alert.rule_kind,
        alert.severity.value,
        alert.severity.rank,
        alert.status.value,
        alert.description,
        json_bytes(alert.group),
        alert.user_id,
        alert.server_hostname,
        first_seen,
        to_ms(alert.last_seen),
        alert.occurrences,
        json_bytes(alert.event_ids),
        json_bytes(alert.tags),
        now_ms,
        now_ms,
        first_seen,  # opened_at of a new alert; a known one keeps its own (alert_keys)
    )


def event_values(alert_id: UUID, event: Event, opened_at: int) -> tuple[Any, ...]:
    """One COPY row of `alert_events`, in column order (`opened_at`: its alert's partition key)."""
    return (alert_id, event.event_id, to_ms(event.timestamp), event_payload(event), opened_at)


_ALERT_TYPES = wire_types(STAGED_ALERTS)
_EVENT_TYPES = wire_types(alert_events)

# PostgreSQL's undefined_table and undefined_column: a schema older than the code, as engine.py maps them.
_MISSING_SCHEMA_SQLSTATES = {"42P01", "42703"}


@contextmanager
def _mapped(operation: str, driver: psycopg.AsyncConnection[Any]) -> Iterator[None]:
    """COPY runs on the raw driver connection, below SQLAlchemy's error wrapping: map its errors here."""
    try:
        yield
    except psycopg.Error as error:
        detail = f"{type(error).__name__}: {str(error).strip()[:200]}"
        if isinstance(error, psycopg.errors.CharacterNotInRepertoire) and "0x00" in str(error):
            # What binary COPY reports for a NUL in text (text COPY and INSERT said so in words).
            detail = f"a NUL character in text, which PostgreSQL cannot store ({detail})"
        message = f"alert store {operation} failed: {detail}"
        if error.sqlstate in _MISSING_SCHEMA_SQLSTATES:
            missing = f"alert store {operation} failed: the schema is not migrated: run auditflow migrate"
            raise SchemaNotReady(missing) from error
        if isinstance(error, psycopg.OperationalError) or driver.closed:
            raise BackendUnavailable(message) from error
        raise BackendError(message) from error


async def copy_rows(
    conn: AsyncConnection, target: sa.Table, types: Sequence[str], rows: Iterator[tuple[Any, ...]]
) -> None:
    """Binary COPY of `rows` (every column of `target`, in order) in the caller's transaction."""
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(column.name) for column in target.c)
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    with _mapped(f"COPY into {target.name}", driver):
        async with driver.cursor() as cursor:
            cursor.adapters.register_dumper(None, _EncodedJsonb)
            cursor.adapters.register_dumper(None, _EncodedJson)
            statement = f"COPY {quote(target.name)} ({columns}) FROM STDIN (FORMAT BINARY)"
            async with cursor.copy(statement) as copy:
                copy.set_types(types)
                for row in rows:
                    await copy.write_row(row)


def _matches_staged(table: sa.Table) -> sa.ColumnElement[bool]:
    return sa.and_(*(table.c[column.name] == STAGED_ALERTS.c[column.name] for column in PG_CONFLICT_TARGET))


# The ids' key rows, from two array parameters (ids, staged opened_at) in id order: inserted for new
# ids, locked but not rewritten for known ones (a false WHERE of DO UPDATE still locks), so a writer
# and retention never disagree about an id's `opened_at`. A key row inserted here is a new alert (keys
# and alerts are deleted together). Returned: the ids that were known, usually the fewer. Sent on the
# driver connection with binary parameters (`%b`): the arrays go out in their wire form, where the
# text form had every UUID formatted and every element quoted in Python.
_TAKE_KEYS = (
    "WITH incoming AS (SELECT alert_id, opened_at FROM unnest(%b::uuid[], %b::int8[]) AS i(alert_id, opened_at)),"
    " taken AS (INSERT INTO alert_keys (alert_id, opened_at) SELECT alert_id, opened_at FROM incoming"
    " ORDER BY alert_id ON CONFLICT (alert_id) DO UPDATE SET opened_at = alert_keys.opened_at WHERE false"
    " RETURNING alert_id)"
    " SELECT alert_id FROM incoming WHERE NOT EXISTS (SELECT FROM taken WHERE taken.alert_id = incoming.alert_id)"
)


async def take_keys(conn: AsyncConnection, rows: Sequence[tuple[Any, ...]]) -> set[UUID]:
    """Key rows for the batch's `alert_values` rows, locked in id order; returns the ids that were
    known (their alerts are stored)."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    with _mapped("key rows", driver):
        async with driver.cursor(binary=True) as cursor:
            await cursor.execute(_TAKE_KEYS, ([row[0] for row in rows], [row[-1] for row in rows]))
            return {alert_id for (alert_id,) in await cursor.fetchall()}


async def insert_new(conn: AsyncConnection, rows: Iterable[tuple[Any, ...]]) -> None:
    """COPY the rows of new alerts straight into `alerts`: their key rows were inserted by this
    transaction, so no stored row can conflict and nothing needs to be read back."""
    await copy_rows(conn, alerts, _ALERT_TYPES, iter(rows))


async def stage_known(conn: AsyncConnection, rows: Iterable[tuple[Any, ...]]) -> None:
    """COPY the rows of known alerts into the staging table, emptied at the end of the transaction,
    and give each the partition key it is stored with."""
    quote = conn.dialect.identifier_preparer.quote
    # Created once per session; ON COMMIT DELETE ROWS empties it at the end of every transaction,
    # and IF NOT EXISTS keeps working behind a transaction-pooling proxy.
    await conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {quote(STAGED_ALERTS.name)} "
        f"(LIKE {quote(alerts.name)}) ON COMMIT DELETE ROWS"
    )
    await copy_rows(conn, STAGED_ALERTS, _ALERT_TYPES, iter(rows))
    await conn.execute(_KEEP_OPENED)


# A known id keeps the `opened_at` it was first stored with, whatever first_seen a redelivery carries.
_KEEP_OPENED = (
    sa.update(STAGED_ALERTS)
    .where(
        STAGED_ALERTS.c.alert_id == alert_keys.c.alert_id,
        STAGED_ALERTS.c.opened_at != alert_keys.c.opened_at,
    )
    .values(opened_at=alert_keys.c.opened_at)
)


async def stored_state(conn: AsyncConnection, *, every: bool) -> dict[UUID, tuple[int, str]]:
    """Occurrences and status of the stored alerts of the staged batch, locked in id order (the
    upsert's order, so concurrent writers neither deadlock nor both report one change): all of them
    when `every`, else only the resolved ones that the batch reopens."""
    staged = STAGED_ALERTS
    query = (
        sa.select(alerts.c.alert_id, alerts.c.occurrences, alerts.c.status)
        .join_from(alerts, staged, _matches_staged(alerts))
        .order_by(alerts.c.alert_id)
        .with_for_update(of=alerts)
    )
    if not every:
        query = query.where(alerts.c.status == "resolved", staged.c.occurrences > alerts.c.occurrences)
    rows = (await conn.execute(query)).all()
    return {alert_id: (count, status) for alert_id, count, status in rows}


def _upsert_statement() -> Any:
    insert = pg_insert(alerts).from_select(
        [column.name for column in alerts.c], sa.select(*STAGED_ALERTS.c).order_by(STAGED_ALERTS.c.alert_id)
    )
    # (The new ids come from take_keys: a partitioned table refuses RETURNING xmax.)
    return insert.on_conflict_do_update(
        index_elements=list(PG_CONFLICT_TARGET), set_=conflict_updates(insert.excluded, "postgresql")
    ).returning(alerts.c.alert_id, alerts.c.opened_at)


_UPSERT = _upsert_statement()


async def upsert_staged(conn: AsyncConnection) -> dict[UUID, int]:
    """Merge the staged (known) alerts; returns their `opened_at` (their partition key)."""
    return {row.alert_id: row.opened_at for row in await conn.execute(_UPSERT)}


async def insert_events(
    conn: AsyncConnection, events: Sequence[tuple[UUID, Sequence[Event]]], opened: Mapping[UUID, int]
) -> None:
    """COPY straight into alert_events (per alert, the events to add): no row can conflict, because
    every alert of the batch is locked and its stored events were subtracted after taking that lock."""
    rows: list[tuple[Any, ...]] = []
    for alert_id, found in events:
        opened_at = opened[alert_id]
        rows.extend(event_values(alert_id, event, opened_at) for event in found)
    await copy_rows(conn, alert_events, _EVENT_TYPES, iter(rows))


async def stored_event_ids(conn: AsyncConnection, ids: Sequence[UUID]) -> dict[UUID, set[UUID]]:
    """The stored event ids of these alerts, in one statement whatever their number (an array
    parameter, not a list of parameters to parse)."""
    stored: dict[UUID, set[UUID]] = {alert_id: set() for alert_id in ids}
    query = sa.select(alert_events.c.alert_id, alert_events.c.event_id).where(
        alert_events.c.alert_id == sa.any_(sa.bindparam("ids", type_=ARRAY(sa.Uuid())))
    )
    for alert_id, event_id in await conn.execute(query, {"ids": list(ids)}):
        stored[alert_id].add(event_id)
    return stored
