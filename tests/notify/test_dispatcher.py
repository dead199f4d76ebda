"""The dispatcher against local receivers on SQLite and PostgreSQL: signed messages with the delivery
id as idempotency key, retries after 500 with the same key, 429 Retry-After honoured, a receiver that
hangs past the timeout, redirects refused, dead after the last attempt with the reason, and replicas
sharing one outbox without sending a row twice."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import REGISTRY

from auditflow.backends.store.sql import SqlAlertStore
from auditflow.notify.dispatcher import Dispatcher
from auditflow.notify.outbox import OutboxWriter, Outcome, claim, finish
from auditflow.notify.routing import Routing
from tests.factories import make_alert
from tests.notify.conftest import SECRET, all_deliveries, routing_dict, single_route, until_settled
from tests.notify.receiver import Answer, WebhookReceiver


def sample(result: str) -> float:
    value = REGISTRY.get_sample_value("auditflow_notify_deliveries_total", {"channel": "soc", "result": result})
    return value or 0.0


async def dispatch(store: SqlAlertStore, routing: Routing, count: int = 1) -> list:
    store.transition_hook = OutboxWriter(routing)
    await store.upsert_alerts([make_alert() for _ in range(count)])
    dispatcher = Dispatcher(store, routing)
    try:
        await until_settled(dispatcher)
    finally:
        await dispatcher.aclose()
    return await all_deliveries(store)


async def test_a_signed_message_with_the_alert_and_its_key(outbox_store: SqlAlertStore) -> None:
    with WebhookReceiver(SECRET) as receiver:
        [delivery] = await dispatch(outbox_store, single_route(receiver.url))
        [request] = receiver.seen()
    assert delivery.status == "sent"
    assert delivery.attempts == 1
    assert request.signature_ok
    assert request.key == str(delivery.delivery_id) == request.body["delivery_id"]
    assert request.event == "new" == request.body["event"]
    assert request.body["alert"]["alert_id"] == str(delivery.alert_id)
    assert request.body["alert_url"] == f"https://auditflow.example/alerts/{delivery.alert_id}"


async def test_server_errors_are_retried_with_the_same_key_and_body(outbox_store: SqlAlertStore) -> None:
    def plan(number: int, _key: str) -> Answer:
        return Answer(500) if number <= 2 else Answer()

    before = {result: sample(result) for result in ("sent", "failed", "retried", "dead")}
    with WebhookReceiver(SECRET, plan) as receiver:
        [delivery] = await dispatch(outbox_store, single_route(receiver.url))
        requests = receiver.seen()
    assert delivery.status == "sent"
    assert delivery.attempts == 3
    changes = {result: sample(result) - count for result, count in before.items()}
    assert changes == {"sent": 1, "failed": 2, "retried": 2, "dead": 0}
    assert len(requests) == 3
    assert {r.key for r in requests} == {str(delivery.delivery_id)}
    assert len({r.raw for r in requests}) == 1


async def test_retry_after_is_honoured(outbox_store: SqlAlertStore) -> None:
    def plan(number: int, _key: str) -> Answer:
        return Answer(429, (("Retry-After", "1"),)) if number == 1 else Answer()

    with WebhookReceiver(SECRET, plan) as receiver:
        routing = single_route(receiver.url, max_backoff=5)
        outbox_store.transition_hook = OutboxWriter(routing)
        await outbox_store.upsert_alerts([make_alert()])
        dispatcher = Dispatcher(outbox_store, routing)
        try:
            before = time.time()
            await dispatcher.run_once()
            [waiting] = await all_deliveries(outbox_store)
            assert waiting.status == "pending"
            assert waiting.last_error is not None
            assert waiting.last_error.startswith("HTTP 429")
            assert waiting.next_attempt_at is not None
            assert waiting.next_attempt_at.timestamp() >= before + 0.95  # not the 50 ms back-off
            assert await dispatcher.run_once() == 0  # not due yet
            await until_settled(dispatcher)
        finally:
            await dispatcher.aclose()
        assert len(receiver.seen()) == 2
    assert time.time() - before >= 1.0


async def test_a_receiver_that_hangs_past_the_timeout_is_retried(outbox_store: SqlAlertStore) -> None:
    def plan(number: int, _key: str) -> Answer:
        return Answer(delay=3.0) if number == 1 else Answer()

    with WebhookReceiver(SECRET, plan) as receiver:
        started = time.monotonic()
        [delivery] = await dispatch(outbox_store, single_route(receiver.url))
        elapsed = time.monotonic() - started
        assert len(receiver.seen()) == 2
    assert delivery.status == "sent"
    assert delivery.attempts == 2
    assert elapsed < 2.9  # the 1 s timeout ended the first attempt, not the receiver


async def test_redirects_are_not_followed_and_the_last_attempt_is_dead(outbox_store: SqlAlertStore) -> None:
    def plan(_number: int, _key: str) -> Answer:
        return Answer(307, (("Location", "http://127.0.0.1:9/elsewhere"),))

    with WebhookReceiver(SECRET, plan) as receiver:
        [delivery] = await dispatch(outbox_store, single_route(receiver.url, max_attempts=3))
        assert len(receiver.seen()) == 3
    assert delivery.status == "dead"
    assert delivery.attempts == 3
    assert (
        delivery.last_error
        == "gave up after 3 attempts: HTTP 307 redirect to http://127.0.0.1:9/elsewhere not followed"
    )
    assert delivery.next_attempt_at is None


async def test_an_unreachable_receiver_dies_with_the_connection_error(outbox_store: SqlAlertStore) -> None:
    [delivery] = await dispatch(outbox_store, single_route("http://127.0.0.1:9/hook", max_attempts=2))
    assert delivery.status == "dead"
    assert delivery.last_error is not None
    assert delivery.last_error.startswith("gave up after 2 attempts: ConnectError")


async def test_replicas_share_the_outbox_and_send_each_row_once(outbox_store: SqlAlertStore) -> None:
    def plan(_number: int, _key: str) -> Answer:
        return Answer(delay=0.01)

    with WebhookReceiver(SECRET, plan) as receiver:
        raw = routing_dict(receiver.url, batch_size=5)
        raw["routes"] = raw["routes"][:1]
        # A request that times out is rightly sent again (same key); on a busy machine the in-process
        # receiver can take longer than the usual 1 s, and a re-send is not what this test is about.
        raw["channels"]["soc"]["timeout"] = 20
        routing = Routing.model_validate(raw)
        outbox_store.transition_hook = OutboxWriter(routing)
        await outbox_store.upsert_alerts([make_alert() for _ in range(60)])
        replicas = [Dispatcher(outbox_store, routing) for _ in range(3)]
        for replica in replicas:
            await replica.start()
        try:
            async with asyncio.timeout(30):
                while len(receiver.accepted_keys()) < 60:
                    await asyncio.sleep(0.05)
            async with asyncio.timeout(5):  # each dispatcher publishes the depth every second
                while REGISTRY.get_sample_value("auditflow_notify_outbox_depth") != 0:
                    await asyncio.sleep(0.05)
        finally:
            for replica in replicas:
                await replica.aclose()
        requests = receiver.seen()
    assert len(requests) == 60  # no row was sent twice
    deliveries = await all_deliveries(outbox_store)
    assert {d.status for d in deliveries} == {"sent"}
    assert {r.key for r in requests} == {str(d.delivery_id) for d in deliveries}


async def test_a_row_whose_sender_keeps_dying_ends_dead(outbox_store: SqlAlertStore) -> None:
    outbox_store.transition_hook = OutboxWriter(single_route("http://127.0.0.1:9/hook"))
    await outbox_store.upsert_alerts([make_alert()])
    now = int(time.time() * 1000)
    lease = 1000
    # Two senders claim the row and die before recording anything; the lease frees it each time.
    assert len(await claim(outbox_store, "first", 10, lease, now, max_attempts=2)) == 1
    assert await claim(outbox_store, "other", 10, lease, now + lease - 1, max_attempts=2) == []  # still leased
    [again] = await claim(outbox_store, "second", 10, lease, now + lease + 1, max_attempts=2)
    assert again.attempts == 2
    assert await claim(outbox_store, "third", 10, lease, now + 2 * lease + 2, max_attempts=2) == []
    [delivery] = await all_deliveries(outbox_store)
    assert delivery.status == "dead"
    assert delivery.last_error == "gave up after 2 attempts: the dispatcher stopped during the last one"


async def test_a_late_sender_does_not_overwrite_the_new_owner(outbox_store: SqlAlertStore) -> None:
    outbox_store.transition_hook = OutboxWriter(single_route("http://127.0.0.1:9/hook"))
    await outbox_store.upsert_alerts([make_alert()])
    now = int(time.time() * 1000)
    [first] = await claim(outbox_store, "slow", 10, 1000, now, max_attempts=5)
    await claim(outbox_store, "fresh", 10, 1000, now + 1001, max_attempts=5)
    assert await finish(outbox_store, "slow", [Outcome(first.delivery_id, "dead", now, "late")], now) == 0
    assert await finish(outbox_store, "fresh", [Outcome(first.delivery_id, "sent", now)], now) == 1
    [delivery] = await all_deliveries(outbox_store)
    assert (delivery.status, delivery.last_error) == ("sent", None)
