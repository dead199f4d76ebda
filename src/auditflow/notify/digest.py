"""Digests: a route with `digest: <interval>` bundles the alert changes it matches into one message per
channel, sent when the window closes (its first change + the interval).

How the rows accumulate, safely with any number of writers and dispatchers:

* A digest is a row of the outbox in status `open` (at most one per route and channel, by a partial unique
  index), due when its window closes. Writers add an item row per change in the alert change's own
  transaction, keyed to the open digest; the first writer of a window opens it, concurrent writers meet at
  the unique index and all use the same row.
* On PostgreSQL a writer holds a share lock on the open digest until it commits; writers do not block each
  other, but a dispatcher sealing the digest waits for them, so no item commits into a digest that was
  already sealed. On SQLite the write lock orders everything.
* A dispatcher seals a due digest in one short transaction: it locks the row, counts and reads the items,
  and turns the row into a `pending` delivery whose payload is the digest message. From then on it is
  claimed, retried, and declared dead exactly like a single delivery, with its delivery id as the
  idempotency key. A writer that finds its digest sealed opens the next one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from auditflow.backends.store.schema import OPEN_DIGEST, from_ms
from auditflow.backends.store.schema import notification_deliveries as deliveries
from auditflow.backends.store.schema import notification_digest_items as items
from auditflow.backends.store.sql import SqlAlertStore
from auditflow.errors import BackendError
from auditflow.model.timeutil import format_utc

# A digest message lists at most this many changes (the oldest); `count` is always the true number.
MAX_DIGEST_ITEMS = 100
# A writer that keeps finding its digest sealed under it (a dispatcher is faster) gives up after this.
_OPEN_TRIES = 10
# Digests sealed per dispatcher round.
_SEAL_BATCH = 100
# The unique index's predicate as a literal: PostgreSQL cannot match a bound parameter against it once the
# statement is prepared (psycopg prepares a statement after a few executions).
_OPEN_INDEX = deliveries.c.status == sa.literal_column("'open'")


def _iso(ms: int) -> str:
    return format_utc(from_ms(ms))


def _insert(conn: AsyncConnection, table: sa.Table) -> Any:
    return pg_insert(table) if conn.dialect.name == "postgresql" else sqlite_insert(table)


async def _open_digest(conn: AsyncConnection, route: str, channel: str, interval_ms: int, now_ms: int) -> UUID:
    """The id of the open digest of (route, channel), opened now when there is none; on PostgreSQL the
    row stays share-locked until the caller's transaction ends."""
    opened = {
        "delivery_id": uuid4(),
        "alert_id": None,
        "route": route,
        "channel": channel,
        "event": "digest",
        "status": "open",
        "attempts": 0,
        "next_attempt_at": now_ms + interval_ms,
        "lease_until": None,
        "claimed_by": None,
        "last_error": None,
        # Replaced by the message when the digest is sealed.
        "payload": {"event": "digest", "route": route, "count": 0, "items": []},
        "created_at": now_ms,
        "sent_at": None,
    }
    insert = _insert(conn, deliveries).on_conflict_do_nothing(
        index_elements=[deliveries.c.route, deliveries.c.channel], index_where=_OPEN_INDEX
    )
    find = sa.select(deliveries.c.delivery_id).where(
        deliveries.c.route == route, deliveries.c.channel == channel, OPEN_DIGEST
    )
    if conn.dialect.name == "postgresql":
        find = find.with_for_update(read=True)
    for _ in range(_OPEN_TRIES):
        await conn.execute(insert, opened)
        # Gone again only when a dispatcher sealed it between the two statements: open the next one.
        found = (await conn.execute(find)).scalar_one_or_none()
        if found is not None:
            return UUID(str(found))
    raise BackendError(f"could not open a digest for route {route!r}, channel {channel!r}")


async def add_items(
    conn: AsyncConnection,
    pending: Mapping[tuple[str, str], Sequence[dict[str, Any]]],
    intervals: Mapping[str, int],
    now_ms: int,
) -> None:
    """Attach items (each with item_id, alert_id, event, payload) to the open digest of their (route,
    channel), inside the caller's transaction."""
    rows: list[dict[str, Any]] = []
    # Always in the same order, so that two writers never wait for each other's digests crosswise.
    for route, channel in sorted(pending):
        digest_id = await _open_digest(conn, route, channel, intervals[route], now_ms)
        rows.extend({**item, "digest_id": digest_id, "created_at": now_ms} for item in pending[(route, channel)])
    if rows:
        await conn.execute(_insert(conn, items).on_conflict_do_nothing(index_elements=[items.c.item_id]), rows)


async def seal_due(store: SqlAlertStore, now_ms: int) -> int:
    """Turn the digests whose window closed into pending deliveries; returns how many were sealed."""
    due = (
        sa.select(deliveries.c.delivery_id)
        .where(OPEN_DIGEST, deliveries.c.next_attempt_at <= now_ms)
        .order_by(deliveries.c.next_attempt_at)
        .limit(_SEAL_BATCH)
    )
    async with store.connection(write=False) as conn:
        ids = list((await conn.execute(due)).scalars())
    sealed = 0
    for digest_id in ids:
        # One transaction per digest: it waits only for the writers of that digest.
        async with store.connection(write=True) as conn:
            sealed += await _seal(conn, digest_id)
    return sealed


async def _seal(conn: AsyncConnection, digest_id: UUID) -> int:
    lock = sa.select(deliveries.c.route, deliveries.c.created_at, deliveries.c.next_attempt_at).where(
        deliveries.c.delivery_id == digest_id, OPEN_DIGEST
    )
    if conn.dialect.name == "postgresql":
        lock = lock.with_for_update()
    row = (await conn.execute(lock)).first()
    if row is None:  # another dispatcher sealed it first
        return 0
    route, window_start, planned_end = row
    of_digest = items.c.digest_id == digest_id
    totals = sa.select(sa.func.count(), sa.func.max(items.c.created_at)).where(of_digest)
    count, last = (await conn.execute(totals)).one()
    if not count:
        # Opened by a writer whose change turned out to be recorded already: nothing to send.
        await conn.execute(deliveries.delete().where(deliveries.c.delivery_id == digest_id))
        return 0
    oldest = (
        sa.select(items.c.payload)
        .where(of_digest)
        .order_by(items.c.created_at, items.c.item_id)
        .limit(MAX_DIGEST_ITEMS)
    )
    payload = {
        "event": "digest",
        "route": route,
        "count": int(count),
        "window_start": _iso(window_start),
        # A change committed while the window was being closed is in it, and the window says so.
        "window_end": _iso(max(planned_end, last)),
        "items": list((await conn.execute(oldest)).scalars()),
    }
    await conn.execute(
        deliveries.update().where(deliveries.c.delivery_id == digest_id).values(status="pending", payload=payload)
    )
    return 1
