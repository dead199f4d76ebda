"""A running dispatcher claims ahead while it sends, within a bound: at most two batches unsent, the
rows not started handed back at a stop, and a row that waited too long of its lease handed back rather
than sent while another dispatcher may claim it; a handed-back row is due at once and its claim does
not count as an attempt."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
import sqlalchemy as sa

from auditflow.backends.store.schema import notification_deliveries as deliveries
from auditflow.backends.store.sql import SqlAlertStore
from auditflow.notify.dispatcher import IN_HAND_BATCHES, Dispatcher
from auditflow.notify.outbox import OutboxWriter, claim, release
from auditflow.notify.routing import Routing
from tests.factories import make_alert
from tests.notify.conftest import SECRET, routing_dict, single_route
from tests.notify.receiver import Answer, WebhookReceiver


async def outbox_rows(store: SqlAlertStore) -> list[dict[str, Any]]:
    async with store.connection(write=False) as conn:
        return [dict(row) for row in (await conn.execute(deliveries.select())).mappings().all()]


async def held_by(store: SqlAlertStore, owner: str) -> int:
    async with store.connection(write=False) as conn:
        query = sa.select(sa.func.count()).select_from(deliveries).where(deliveries.c.claimed_by == owner)
        return int((await conn.execute(query)).scalar_one())


async def test_a_released_row_is_due_at_once_and_its_claim_is_no_attempt(outbox_store: SqlAlertStore) -> None:
    outbox_store.transition_hook = OutboxWriter(single_route("http://127.0.0.1:9/hook"))
    await outbox_store.upsert_alerts([make_alert()])
    now = int(time.time() * 1000)
    [row] = await claim(outbox_store, "first", 10, 60_000, now, max_attempts=5)
    assert row.attempts == 1
    assert await release(outbox_store, "other", [row.delivery_id]) == 0  # not its row
    assert await claim(outbox_store, "other", 10, 60_000, now, max_attempts=5) == []
    assert await release(outbox_store, "first", [row.delivery_id]) == 1
    [again] = await claim(outbox_store, "second", 10, 60_000, now, max_attempts=5)
    assert (again.delivery_id, again.attempts) == (row.delivery_id, 1)


async def test_a_running_dispatcher_claims_ahead_within_two_batches(outbox_store: SqlAlertStore) -> None:
    alerts, batch = 40, 5
    with WebhookReceiver(SECRET, lambda _n, _k: Answer(delay=0.03)) as receiver:
        routing = single_route(receiver.url, batch_size=batch, concurrency=2)
        outbox_store.transition_hook = OutboxWriter(routing)
        await outbox_store.upsert_alerts([make_alert() for _ in range(alerts)])
        dispatcher = Dispatcher(outbox_store, routing)
        most = 0
        await dispatcher.start()
        try:
            async with asyncio.timeout(60):
                while len(receiver.accepted_keys()) < alerts:
                    most = max(most, await held_by(outbox_store, dispatcher.owner))
                    await asyncio.sleep(0.01)
        finally:
            await dispatcher.aclose()
        assert len(receiver.seen()) == alerts
    # The next batch claimed while one is sent; no more, but for outcomes waiting for their statement.
    assert batch < most <= (IN_HAND_BATCHES + 1) * batch
    rows = await outbox_rows(outbox_store)
    assert {(row["status"], row["attempts"], row["claimed_by"]) for row in rows} == {("sent", 1, None)}


async def test_a_stop_hands_back_the_rows_not_started(outbox_store: SqlAlertStore) -> None:
    with WebhookReceiver(SECRET, lambda _n, _k: Answer(delay=0.3)) as receiver:
        routing = single_route(receiver.url, batch_size=10, concurrency=1)
        outbox_store.transition_hook = OutboxWriter(routing)
        await outbox_store.upsert_alerts([make_alert() for _ in range(10)])
        dispatcher = Dispatcher(outbox_store, routing)
        await dispatcher.start()
        try:
            async with asyncio.timeout(30):
                while not receiver.seen():
                    await asyncio.sleep(0.01)
        finally:
            await dispatcher.aclose()  # the request in flight finishes and is recorded
        sent = {request.key for request in receiver.seen()}
    rows = await outbox_rows(outbox_store)
    assert {str(row["delivery_id"]) for row in rows if row["status"] == "sent"} == sent
    waiting = [row for row in rows if row["status"] != "sent"]
    assert len(waiting) == 10 - len(sent) > 0
    assert {(row["status"], row["attempts"], row["claimed_by"], row["lease_until"]) for row in waiting} == {
        ("pending", 0, None, None)
    }


async def test_a_row_too_late_in_its_lease_is_handed_back_not_sent(
    outbox_store: SqlAlertStore, caplog: pytest.LogCaptureFixture
) -> None:
    hung: list[str] = []

    def plan(_number: int, key: str) -> Answer:
        if not hung:  # the very first request outlives the 1 s timeout; the rows behind it wait
            hung.append(key)
            return Answer(delay=1.5)
        return Answer()

    with WebhookReceiver(SECRET, plan) as receiver:
        raw = routing_dict(receiver.url, batch_size=5, concurrency=1, lease=2)
        raw["routes"] = raw["routes"][:1]
        routing = Routing.model_validate(raw)
        outbox_store.transition_hook = OutboxWriter(routing)
        await outbox_store.upsert_alerts([make_alert() for _ in range(5)])
        dispatcher = Dispatcher(outbox_store, routing)
        with caplog.at_level(logging.WARNING, logger="auditflow.notify"):
            await dispatcher.start()
            try:
                async with asyncio.timeout(30):
                    while len(receiver.accepted_keys()) < 5:
                        await asyncio.sleep(0.02)
            finally:
                await dispatcher.aclose()
        keys = [request.key for request in receiver.seen()]
    handed_back = [record for record in caplog.records if "handed back unsent" in record.getMessage()]
    assert len(handed_back) == 4  # the rows queued behind the hung request, none of them sent then
    assert sorted(keys.count(key) for key in set(keys)) == [1, 1, 1, 1, 2]  # only the timed-out one twice
    attempts = {str(row["delivery_id"]): row["attempts"] for row in await outbox_rows(outbox_store)}
    assert attempts == {key: 2 if key == hung[0] else 1 for key in set(keys)}
