"""Retention of delivery rows on SQLite and PostgreSQL: sent rows older than keep_sent and dead rows older
than keep_dead are deleted (a digest with its items) in statements of bounded size, at most once per
purge interval, counted in a metric; pending and open rows stay however old they are."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from prometheus_client import REGISTRY

from auditflow.backends.store.schema import notification_deliveries as deliveries
from auditflow.backends.store.schema import notification_digest_items as items
from auditflow.backends.store.sql import SqlAlertStore
from auditflow.model.event import Severity
from auditflow.notify import digest
from auditflow.notify.dispatcher import Dispatcher
from auditflow.notify.outbox import OutboxWriter
from auditflow.notify.purge import purge
from auditflow.notify.routing import Routing
from tests.factories import make_alert
from tests.notify.conftest import routing_dict

DAY = 86_400_000
URL = "http://127.0.0.1:9/hook"


def routing(**delivery: Any) -> Routing:
    raw = routing_dict(URL, keep_sent="7d", keep_dead="30d", purge_interval="1h", **delivery)
    raw["routes"] = [
        {"name": "single", "channels": ["soc"]},
        {"name": "batched", "channels": ["soc"], "digest": "5m", "min_severity": "CRITICAL"},
    ]
    return Routing.model_validate(raw)


async def single_rows(store: SqlAlertStore, count: int) -> list[UUID]:
    store.transition_hook = OutboxWriter(routing())
    await store.upsert_alerts([make_alert() for _ in range(count)])
    async with store.connection(write=False) as conn:
        query = sa.select(deliveries.c.delivery_id).where(deliveries.c.route == "single")
        return sorted((await conn.execute(query)).scalars())


async def set_row(store: SqlAlertStore, delivery_id: UUID, status: str, at_ms: int) -> None:
    async with store.connection(write=True) as conn:
        await conn.execute(
            deliveries.update()
            .where(deliveries.c.delivery_id == delivery_id)
            .values(status=status, next_attempt_at=at_ms, sent_at=at_ms if status == "sent" else None)
        )


async def remaining(store: SqlAlertStore) -> tuple[set[UUID], int]:
    async with store.connection(write=False) as conn:
        ids = set((await conn.execute(sa.select(deliveries.c.delivery_id))).scalars())
        count = (await conn.execute(sa.select(sa.func.count()).select_from(items))).scalar_one()
    return ids, int(count)


def purged(status: str) -> float:
    return REGISTRY.get_sample_value("auditflow_notify_purged_deliveries_total", {"status": status}) or 0.0


async def test_old_finished_rows_go_and_everything_else_stays(outbox_store: SqlAlertStore) -> None:
    now = int(time.time() * 1000)
    old_sent, recent_sent, old_dead, recent_dead, ancient_pending = await single_rows(outbox_store, 5)
    await set_row(outbox_store, old_sent, "sent", now - 8 * DAY)
    await set_row(outbox_store, recent_sent, "sent", now - 6 * DAY)
    await set_row(outbox_store, old_dead, "dead", now - 31 * DAY)
    await set_row(outbox_store, recent_dead, "dead", now - 29 * DAY)
    await set_row(outbox_store, ancient_pending, "pending", now - 60 * DAY)
    # A digest sent long ago, with its three items, and an open one that is as old.
    outbox_store.transition_hook = OutboxWriter(routing())
    await outbox_store.upsert_alerts([make_alert(severity=Severity.CRITICAL) for _ in range(3)])
    await digest.seal_due(outbox_store, now + 301_000)
    await outbox_store.upsert_alerts([make_alert(severity=Severity.CRITICAL)])
    async with outbox_store.connection(write=False) as conn:
        query = sa.select(deliveries.c.delivery_id, deliveries.c.status).where(deliveries.c.event == "digest")
        digests = dict((await conn.execute(query)).all())
    [sent_digest] = [key for key, status in digests.items() if status == "pending"]
    [open_digest] = [key for key, status in digests.items() if status == "open"]
    await set_row(outbox_store, sent_digest, "sent", now - 8 * DAY)
    async with outbox_store.connection(write=True) as conn:
        await conn.execute(deliveries.update().where(deliveries.c.delivery_id == open_digest).values(created_at=0))
    # Pending single rows of the "single" route for the four critical alerts stay untouched too.
    before, items_before = await remaining(outbox_store)
    assert items_before == 4

    clock_s = now / 1000
    dispatcher = Dispatcher(outbox_store, routing(), clock=lambda: clock_s)
    sent_before, dead_before = purged("sent"), purged("dead")
    try:
        assert await dispatcher.purge_if_due() == 3
    finally:
        await dispatcher.aclose()
    after, items_after = await remaining(outbox_store)
    assert before - after == {old_sent, old_dead, sent_digest}
    assert {recent_sent, recent_dead, ancient_pending, open_digest} <= after
    assert items_after == 1  # the open digest's item; the sent digest's went with it
    assert (purged("sent") - sent_before, purged("dead") - dead_before) == (2, 1)


async def test_at_most_once_per_interval(outbox_store: SqlAlertStore) -> None:
    now = int(time.time() * 1000)
    first, second = await single_rows(outbox_store, 2)
    await set_row(outbox_store, first, "sent", now - 8 * DAY)
    clock = [now / 1000]
    dispatcher = Dispatcher(outbox_store, routing(), clock=lambda: clock[0])
    try:
        assert await dispatcher.purge_if_due() == 1
        await set_row(outbox_store, second, "dead", now - 31 * DAY)
        clock[0] += 3599
        assert await dispatcher.run_once() == 0  # a round, but no purge before the hour is over
        assert (await remaining(outbox_store))[0] == {second}
        clock[0] += 2
        assert await dispatcher.purge_if_due() == 1
    finally:
        await dispatcher.aclose()
    assert (await remaining(outbox_store))[0] == set()


async def test_a_large_backlog_is_deleted_in_bounded_statements(outbox_store: SqlAlertStore) -> None:
    now = int(time.time() * 1000)
    rows = await single_rows(outbox_store, 25)
    for delivery_id in rows[:23]:
        await set_row(outbox_store, delivery_id, "sent", now - 8 * DAY)
    sizes: list[int] = []

    def record(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM NOTIFICATION_DELIVERIES"):
            sizes.append(cursor.rowcount)

    engine = outbox_store._engine
    assert engine is not None
    sa.event.listen(engine.sync_engine, "after_cursor_execute", record)
    try:
        assert await purge(outbox_store, "sent", now - 7 * DAY, batch=5) == 23
    finally:
        sa.event.remove(engine.sync_engine, "after_cursor_execute", record)
    assert sizes == [5, 5, 5, 5, 3]
    assert len((await remaining(outbox_store))[0]) == 2
