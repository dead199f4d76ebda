"""Retention of finished outbox rows: `sent` rows older than `delivery.keep_sent` and `dead` rows older
than `delivery.keep_dead` are deleted in bounded batches, each its own short transaction, so that a
large backlog never holds the SQLite write lock or a PostgreSQL transaction for long. Pending and open
rows are never deleted. A finished row's `next_attempt_at` is when it finished (sent or declared dead).
"""

from __future__ import annotations

import sqlalchemy as sa

from auditflow.backends.store.schema import notification_deliveries as deliveries
from auditflow.backends.store.schema import notification_digest_items as items
from auditflow.backends.store.sql import SqlAlertStore

# Rows deleted per statement.
PURGE_BATCH = 1000
FINISHED = ("sent", "dead")


def _expired(status: str, before_ms: int) -> sa.ColumnElement[bool]:
    return sa.and_(deliveries.c.status == status, deliveries.c.next_attempt_at < before_ms)


async def _delete_batches(store: SqlAlertStore, statement: sa.Delete, batch: int) -> int:
    total = 0
    while True:
        async with store.connection(write=True) as conn:
            deleted = (await conn.execute(statement)).rowcount
        total += deleted
        # Fewer than a batch: done (or a replica purging at the same time took the rest).
        if deleted < batch:
            return total


async def purge(store: SqlAlertStore, status: str, before_ms: int, batch: int = PURGE_BATCH) -> int:
    """Delete `status` rows (sent or dead) that finished before `before_ms`, with the items of digests
    among them; returns how many delivery rows were deleted."""
    if status not in FINISHED:
        raise ValueError(f"only finished rows are purged, not {status!r}")
    # The items first: a crash between the two leaves a finished digest without its list, never items
    # without their digest.
    expired_items = (
        sa.select(items.c.item_id)
        .select_from(items.join(deliveries, items.c.digest_id == deliveries.c.delivery_id))
        .where(_expired(status, before_ms))
        .limit(batch)
    )
    await _delete_batches(store, items.delete().where(items.c.item_id.in_(expired_items)), batch)
    expired = sa.select(deliveries.c.delivery_id).where(_expired(status, before_ms)).limit(batch)
    return await _delete_batches(store, deliveries.delete().where(deliveries.c.delivery_id.in_(expired)), batch)
