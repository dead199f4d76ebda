"""Digest routes on SQLite and PostgreSQL: changes accumulate in one open digest per channel (in the
alert's transaction), go out as one signed message when the window closes, with at most 100 items and the
true count, are retried and declared dead like single deliveries, show in the deliveries API, count in
the outbox depth, a failure while writing or sealing loses nothing, and concurrent writers and
dispatchers neither lose nor double an item."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from auditflow.backends.store.schema import notification_deliveries, notification_digest_items
from auditflow.backends.store.sql import SqlAlertStore
from auditflow.backends.store.transitions import AlertTransition
from auditflow.model.alert import Alert
from auditflow.notify import digest
from auditflow.notify.dispatcher import Dispatcher
from auditflow.notify.outbox import OutboxWriter, depth, list_deliveries
from auditflow.notify.routing import ALL_EVENTS, Routing
from tests.factories import make_alert
from tests.notify.conftest import SECRET, routing_dict
from tests.notify.receiver import Answer, WebhookReceiver

WINDOW = 300.0  # seconds: the routes' `digest: 5m`


class Clock:
    """The dispatcher's clock: real time moved on by `offset` seconds."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def digest_routing(url: str, channels: tuple[str, ...] = ("soc",), digest: str = "5m", **delivery: Any) -> Routing:
    raw = routing_dict(url, **delivery)
    for name in channels:
        raw["channels"][name] = dict(raw["channels"]["soc"])
    raw["routes"] = [{"name": "batched", "channels": list(channels), "events": list(ALL_EVENTS), "digest": digest}]
    return Routing.model_validate(raw)


async def outbox(store: SqlAlertStore) -> list[dict[str, Any]]:
    async with store.connection(write=False) as conn:
        query = sa.select(notification_deliveries).order_by(notification_deliveries.c.created_at)
        return [dict(row) for row in (await conn.execute(query)).mappings()]


async def item_count(store: SqlAlertStore) -> int:
    async with store.connection(write=False) as conn:
        query = sa.select(sa.func.count()).select_from(notification_digest_items)
        return int((await conn.execute(query)).scalar_one())


async def write(store: SqlAlertStore, routing: Routing, alerts: list[Alert]) -> None:
    store.transition_hook = OutboxWriter(routing)
    await store.upsert_alerts(alerts)


async def test_changes_accumulate_in_one_open_digest_per_channel(outbox_store: SqlAlertStore) -> None:
    routing = digest_routing("http://127.0.0.1:9/hook", channels=("soc", "ops"))
    first = [make_alert() for _ in range(3)]
    await write(outbox_store, routing, first)
    await write(outbox_store, routing, [make_alert(), make_alert()])
    await write(outbox_store, routing, [first[0].model_copy(update={"occurrences": 12})])  # crosses 10
    rows = await outbox(outbox_store)
    assert sorted((row["channel"], row["event"], row["status"], row["alert_id"]) for row in rows) == [
        ("ops", "digest", "open", None),
        ("soc", "digest", "open", None),
    ]
    assert rows[0]["next_attempt_at"] == rows[0]["created_at"] + WINDOW * 1000  # first change + interval
    assert await item_count(outbox_store) == 12  # 6 changes, for 2 channels
    assert await depth(outbox_store) == 12
    views = await list_deliveries(outbox_store, first[0].alert_id)
    assert sorted((v.channel, v.event, v.status, v.alert_id) for v in views) == [
        ("ops", "digest", "pending", first[0].alert_id),
        ("soc", "digest", "pending", first[0].alert_id),
    ]
    closes = rows[0]["next_attempt_at"]
    assert all(v.next_attempt_at is not None and round(v.next_attempt_at.timestamp() * 1000) == closes for v in views)


async def test_a_digest_goes_out_once_when_its_window_closes(outbox_store: SqlAlertStore) -> None:
    clock = Clock()
    with WebhookReceiver(SECRET) as receiver:
        routing = digest_routing(receiver.url)
        alerts = [make_alert() for _ in range(3)]
        await write(outbox_store, routing, alerts[:2])
        await write(outbox_store, routing, [alerts[2], alerts[0].model_copy(update={"occurrences": 12})])
        dispatcher = Dispatcher(outbox_store, routing, clock=clock)
        try:
            assert await dispatcher.run_once() == 0  # the window is still open
            clock.offset = WINDOW - 5
            assert await dispatcher.run_once() == 0
            assert receiver.seen() == []
            clock.offset = WINDOW + 1
            assert await dispatcher.run_once() == 1
            assert await dispatcher.run_once() == 0  # sent once
            later = make_alert()
            await write(outbox_store, routing, [later])  # opens the next window
            clock.offset = WINDOW - 5  # which closes later than the first one
            assert await dispatcher.run_once() == 0
        finally:
            await dispatcher.aclose()
        [request] = receiver.seen()
    assert request.signature_ok
    assert request.event == "digest"
    body = request.body
    assert request.key == body["delivery_id"]
    assert (body["event"], body["route"], body["count"]) == ("digest", "batched", 4)
    # Oldest transaction first (the changes of one transaction come in no particular order).
    listed = [(item["event"], item["alert"]["alert_id"]) for item in body["items"]]
    assert set(listed[:2]) == {("new", str(alert.alert_id)) for alert in alerts[:2]}
    assert set(listed[2:]) == {("new", str(alerts[2].alert_id)), ("escalation", str(alerts[0].alert_id))}
    assert all("route" not in item and item["alert_url"].endswith(item["alert"]["alert_id"]) for item in body["items"])
    start, end = (datetime.fromisoformat(body[key]) for key in ("window_start", "window_end"))
    assert end - start >= timedelta(seconds=WINDOW)
    for alert in alerts:
        [view] = await list_deliveries(outbox_store, alert.alert_id)
        assert (str(view.delivery_id), view.event, view.status, view.attempts) == (request.key, "digest", "sent", 1)
    [view] = await list_deliveries(outbox_store, later.alert_id)
    assert (view.event, view.status) == ("digest", "pending")
    assert str(view.delivery_id) != request.key
    assert await depth(outbox_store) == 1  # the later change, in the next digest


async def test_a_huge_digest_lists_the_oldest_hundred_with_the_true_count(outbox_store: SqlAlertStore) -> None:
    clock = Clock()
    with WebhookReceiver(SECRET) as receiver:
        routing = digest_routing(receiver.url)
        batches = [[make_alert() for _ in range(50)] for _ in range(3)]
        for batch in batches:
            await write(outbox_store, routing, batch)
        assert await depth(outbox_store) == 150
        dispatcher = Dispatcher(outbox_store, routing, clock=clock)
        clock.offset = WINDOW + 1
        try:
            assert await dispatcher.run_once() == 1
        finally:
            await dispatcher.aclose()
        [request] = receiver.seen()
    assert request.body["count"] == 150
    listed = [item["alert"]["alert_id"] for item in request.body["items"]]
    assert len(listed) == len(set(listed)) == 100
    assert {str(alert.alert_id) for alert in batches[0]} <= set(listed)  # the oldest first
    assert len(request.raw) < 200_000


async def test_a_failing_digest_is_retried_with_the_same_key_and_body(outbox_store: SqlAlertStore) -> None:
    clock = Clock()

    def plan(number: int, _key: str) -> Answer:
        return Answer(500) if number <= 2 else Answer()

    with WebhookReceiver(SECRET, plan) as receiver:
        routing = digest_routing(receiver.url)
        await write(outbox_store, routing, [make_alert(), make_alert()])
        dispatcher = Dispatcher(outbox_store, routing, clock=clock)
        try:
            for step in range(1, 6):
                clock.offset = WINDOW + step  # past every back-off (at most 0.2 s here)
                await dispatcher.run_once()
        finally:
            await dispatcher.aclose()
        requests = receiver.seen()
    assert len(requests) == 3
    assert len({r.key for r in requests}) == 1
    assert len({r.raw for r in requests}) == 1  # the same message on every attempt
    [row] = await outbox(outbox_store)
    assert (row["status"], row["attempts"]) == ("sent", 3)


async def test_a_digest_is_dead_after_the_last_attempt(outbox_store: SqlAlertStore) -> None:
    clock = Clock()
    routing = digest_routing("http://127.0.0.1:9/hook", max_attempts=2)
    await write(outbox_store, routing, [make_alert()])
    dispatcher = Dispatcher(outbox_store, routing, clock=clock)
    try:
        for step in range(1, 5):
            clock.offset = WINDOW + step
            await dispatcher.run_once()
    finally:
        await dispatcher.aclose()
    [row] = await outbox(outbox_store)
    assert (row["status"], row["attempts"]) == ("dead", 2)
    assert row["last_error"].startswith("gave up after 2 attempts: ConnectError")
    assert await depth(outbox_store) == 0


class FailingAfterRecord(OutboxWriter):
    async def record(self, conn: AsyncConnection, transitions: Sequence[AlertTransition], now_ms: int) -> None:
        await super().record(conn, transitions, now_ms)
        raise RuntimeError("the transaction fails after the digest item was written")


async def test_a_failed_alert_transaction_leaves_no_item_and_no_digest(outbox_store: SqlAlertStore) -> None:
    outbox_store.transition_hook = FailingAfterRecord(digest_routing("http://127.0.0.1:9/hook"))
    with pytest.raises(RuntimeError):
        await outbox_store.upsert_alerts([make_alert()])
    assert await outbox(outbox_store) == []
    assert await item_count(outbox_store) == 0


async def test_a_failure_while_sealing_leaves_the_digest_open_and_whole(
    outbox_store: SqlAlertStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    routing = digest_routing("http://127.0.0.1:9/hook")
    await write(outbox_store, routing, [make_alert(), make_alert()])
    closed = int((time.time() + WINDOW + 1) * 1000)

    def crash(_value: object) -> str:
        raise RuntimeError("the dispatcher dies while building the message")

    monkeypatch.setattr(digest, "format_utc", crash)
    with pytest.raises(RuntimeError):
        await digest.seal_due(outbox_store, closed)
    [row] = await outbox(outbox_store)
    assert (row["status"], row["payload"]["count"]) == ("open", 0)  # rolled back
    monkeypatch.undo()
    assert await digest.seal_due(outbox_store, closed) == 1
    [row] = await outbox(outbox_store)
    assert (row["status"], row["payload"]["count"], len(row["payload"]["items"])) == ("pending", 2, 2)
    assert await depth(outbox_store) == 2


async def test_concurrent_writers_and_dispatchers_never_lose_or_double_an_item(
    outbox_store: SqlAlertStore, database_url: str
) -> None:
    """Four writers with their own connections store alerts while two dispatchers, whose clocks make every
    digest due at once, keep sealing and sending: every change is in exactly one delivered digest."""
    writers, batches, size = 4, 15, 4
    clock = Clock()
    clock.offset = WINDOW + 1
    with WebhookReceiver(SECRET) as receiver:
        routing = digest_routing(receiver.url)
        stores = [SqlAlertStore(database_url) for _ in range(writers)]
        dispatchers = [Dispatcher(outbox_store, routing, clock=clock) for _ in range(2)]
        written: list[str] = []
        done = asyncio.Event()

        async def first_digest_delivered() -> None:
            for _ in range(600):
                if receiver.seen():
                    return
                await asyncio.sleep(0.05)
            raise AssertionError("no digest was delivered within 30 s while the writers waited")

        async def writer(store: SqlAlertStore) -> None:
            store.transition_hook = OutboxWriter(routing)
            for number in range(batches):
                if number == batches // 2:
                    # On a loaded machine the writers could finish before a dispatcher seals anything: half-way
                    # they wait for a first delivery, so that later changes must go into further digests.
                    await first_digest_delivered()
                batch = [make_alert() for _ in range(size)]
                await store.upsert_alerts(batch)
                written.extend(str(alert.alert_id) for alert in batch)
                await asyncio.sleep(0.02)  # SQLite's busy wait would otherwise starve the dispatchers

        async def sealer(dispatcher: Dispatcher) -> None:
            while not done.is_set():
                await dispatcher.run_once()
                await asyncio.sleep(0.005)

        try:
            for store in stores:
                await store.start()
            sealing = [asyncio.create_task(sealer(d)) for d in dispatchers]
            await asyncio.gather(*(writer(store) for store in stores))
            done.set()
            await asyncio.gather(*sealing)
            for _ in range(20):  # what the writers left open
                await dispatchers[0].run_once()
                if await depth(outbox_store) == 0:
                    break
        finally:
            for dispatcher in dispatchers:
                await dispatcher.aclose()
            for store in stores:
                await store.aclose()
        accepted = {request.key: request.body for request in receiver.seen()}
    assert await depth(outbox_store) == 0
    assert len(accepted) > 1  # the race was real: several digests were sealed while writers wrote
    assert len(written) == writers * batches * size
    assert sum(body["count"] for body in accepted.values()) == len(written)  # none lost, none doubled
    listed = Counter(item["alert"]["alert_id"] for body in accepted.values() for item in body["items"])
    assert set(listed.values()) == {1}
    async with outbox_store.connection(write=False) as conn:
        query = sa.select(notification_digest_items.c.alert_id, notification_digest_items.c.digest_id)
        items = (await conn.execute(query)).all()
    assert sorted(str(alert_id) for alert_id, _ in items) == sorted(written)  # one item per change
    assert {str(digest_id) for _, digest_id in items} == set(accepted)  # each in a delivered digest
    assert {row["status"] for row in await outbox(outbox_store)} == {"sent"}
