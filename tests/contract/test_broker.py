"""The broker contract, one suite over every backend: the in-process broker and RabbitMQ with
quorum queues and with classic queues (whose delivery counting works differently)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest

from auditflow.backends.broker import Broker, Delivery, MessageHandler, create_broker
from auditflow.backends.broker.batching import POISON_REASON, QUEUE_HEADER, REASON_HEADER
from auditflow.backends.broker.memory import MemoryBroker
from auditflow.backends.broker.rabbitmq import RabbitMQBroker
from auditflow.errors import BackendUnavailable, QueueFull
from tests.conftest import RABBITMQ_URL, WAIT, delete_rabbitmq_topology, require_server

BrokerFactory = Callable[..., Awaitable[Broker]]


@pytest.fixture(params=["memory", "rabbitmq", "rabbitmq-classic"])
async def make_broker(request: pytest.FixtureRequest, unique_name: str) -> AsyncIterator[BrokerFactory]:
    """Started brokers sharing one dead-letter queue; RabbitMQ queues are deleted afterwards."""
    kind: str = request.param
    if kind != "memory":
        require_server("rabbitmq")
    created: list[Broker] = []

    async def factory(**options: Any) -> Broker:
        options.setdefault("dead_letter_queue", f"{unique_name}_dlq")
        broker: Broker
        if kind == "memory":
            broker = MemoryBroker("memory://", **options)
        else:
            broker = RabbitMQBroker(RABBITMQ_URL, quorum=kind == "rabbitmq", **options)
        await broker.start()
        created.append(broker)
        return broker

    yield factory
    queues = {q for b in created if isinstance(b, RabbitMQBroker) for q in b.queue_types}  # before aclose forgets
    for broker in created:
        await broker.aclose()
    if kind != "memory":
        queues |= {b.dead_letter_queue for b in created}
        exchanges = {b.dead_letter_exchange for b in created if isinstance(b, RabbitMQBroker)}
        await delete_rabbitmq_topology(queues, exchanges)


@pytest.fixture
def queue(unique_name: str) -> str:
    return f"{unique_name}_q"


class Recorder:
    """A handler that records every batch and wakes the test once it has seen `expected` messages."""

    def __init__(self, expected: int, fail: Callable[[Sequence[Delivery]], None] | None = None) -> None:
        self.expected = expected
        self.fail = fail
        self.batches: list[list[Delivery]] = []
        self.complete = asyncio.Event()

    @property
    def bodies(self) -> list[bytes]:
        return [d.body for batch in self.batches for d in batch]

    async def __call__(self, batch: Sequence[Delivery]) -> None:
        self.batches.append(list(batch))
        if len(self.bodies) >= self.expected:
            self.complete.set()
        if self.fail is not None:
            self.fail(batch)


async def consume_until(
    broker: Broker, queue: str, handler: MessageHandler, done: asyncio.Event, **options: Any
) -> None:
    """Consume until `done` is set, then stop and check that `consume()` returned."""
    task = asyncio.create_task(broker.consume(queue, handler, **options))
    async with asyncio.timeout(WAIT):
        await done.wait()
        await broker.stop_consuming(queue)
        await task


async def test_publish_then_consume_in_batches_and_order(make_broker: BrokerFactory, queue: str) -> None:
    broker = await make_broker()
    bodies = [b"%d" % i for i in range(250)]
    await broker.publish(queue, bodies)
    recorder = Recorder(len(bodies))
    # A linger long enough for a full batch to arrive on a busy machine: the size cap is what is checked.
    await consume_until(broker, queue, recorder, recorder.complete, batch_size=100, linger_ms=1000)
    assert recorder.bodies == bodies
    assert max(len(batch) for batch in recorder.batches) == 100
    assert all(d.delivery_count == 1 for batch in recorder.batches for d in batch)


async def test_headers_reach_the_consumer(make_broker: BrokerFactory, queue: str) -> None:
    broker = await make_broker()
    await broker.publish(queue, [b"x"], headers={"x-source": "api"})
    recorder = Recorder(1)
    await consume_until(broker, queue, recorder, recorder.complete)
    assert recorder.batches[0][0].headers["x-source"] == "api"


async def test_handler_exception_redelivers_with_count_2(make_broker: BrokerFactory, queue: str) -> None:
    broker = await make_broker()
    await broker.publish(queue, [b"once-failing"])

    def fail_first(batch: Sequence[Delivery]) -> None:
        if batch[0].delivery_count == 1:
            raise RuntimeError("transient bug")

    recorder = Recorder(2, fail=fail_first)
    await consume_until(broker, queue, recorder, recorder.complete)
    assert [(d.body, d.delivery_count) for batch in recorder.batches for d in batch] == [
        (b"once-failing", 1),
        (b"once-failing", 2),
    ]
    assert await broker.queue_depth(queue) == 0


async def test_poison_message_is_dead_lettered_after_max_deliveries(make_broker: BrokerFactory, queue: str) -> None:
    broker = await make_broker(max_deliveries=3)
    await broker.publish(queue, [b"poison"], headers={"x-source": "test"})

    def always(batch: Sequence[Delivery]) -> None:
        raise ValueError("cannot handle")

    attempts = Recorder(3, fail=always)
    dead = Recorder(1)
    main = asyncio.create_task(broker.consume(queue, attempts))
    await consume_until(broker, broker.dead_letter_queue, dead, dead.complete)
    await broker.stop_consuming(queue)
    await main
    assert [d.delivery_count for batch in attempts.batches for d in batch] == [1, 2, 3]
    [letter] = dead.batches[0]
    assert letter.body == b"poison"
    # The reason names the limit and the handler's last error.
    assert letter.headers[REASON_HEADER] == f"{POISON_REASON}: ValueError: cannot handle"
    assert letter.headers[QUEUE_HEADER] == queue
    assert letter.headers["x-source"] == "test"
    assert await broker.queue_depth(queue) == 0


async def test_dead_letter_one_delivery_while_the_batch_is_acked(make_broker: BrokerFactory, queue: str) -> None:
    broker = await make_broker()
    await broker.publish(queue, [b"ok-1", b"malformed", b"ok-2"])

    def reject_malformed(batch: Sequence[Delivery]) -> None:
        for delivery in batch:
            if delivery.body == b"malformed":
                delivery.dead_letter("malformed JSON")

    recorder = Recorder(3, fail=reject_malformed)
    await consume_until(broker, queue, recorder, recorder.complete, batch_size=3, linger_ms=2000)
    dead = Recorder(1)
    await consume_until(broker, broker.dead_letter_queue, dead, dead.complete)
    assert len(recorder.batches) == 1
    [letter] = dead.bodies
    assert letter == b"malformed"
    assert dead.batches[0][0].headers[REASON_HEADER] == "malformed JSON"
    assert await broker.queue_depth(queue) == 0
    assert await broker.queue_depth(broker.dead_letter_queue) == 0


async def test_stop_consuming_finishes_the_in_flight_batch(make_broker: BrokerFactory, queue: str) -> None:
    broker = await make_broker()
    bodies = [b"%d" % i for i in range(10)]
    await broker.publish(queue, bodies)
    entered, release = asyncio.Event(), asyncio.Event()
    finished: list[bytes] = []

    async def slow(batch: Sequence[Delivery]) -> None:
        entered.set()
        await release.wait()
        finished.extend(d.body for d in batch)

    task = asyncio.create_task(broker.consume(queue, slow, batch_size=4, linger_ms=200))
    async with asyncio.timeout(WAIT):
        await entered.wait()
        stop = asyncio.create_task(broker.stop_consuming(queue))
        await asyncio.sleep(0)
        assert not stop.done()  # waits for the batch in the handler
        release.set()
        await stop
        assert task.done()
    await task
    assert finished == bodies[:4]
    rest = Recorder(6)
    await consume_until(broker, queue, rest, rest.complete)
    assert set(rest.bodies) == set(bodies[4:])  # the handled batch was acked, the others came back


async def test_stop_consuming_one_queue_leaves_the_others(make_broker: BrokerFactory, queue: str) -> None:
    broker = await make_broker()
    other = f"{queue}_other"
    await broker.publish(queue, [b"first"])
    running = Recorder(1)
    first = asyncio.create_task(broker.consume(queue, running))
    recorder = Recorder(1)
    second = asyncio.create_task(broker.consume(other, recorder))
    async with asyncio.timeout(WAIT):
        await running.complete.wait()
        await broker.stop_consuming(queue)
        await first
        await broker.publish(other, [b"still flowing"])
        await recorder.complete.wait()
        assert not second.done()
        await broker.stop_consuming()
        await second


async def test_handler_may_stop_its_own_consumer(make_broker: BrokerFactory, queue: str) -> None:
    broker = await make_broker()
    await broker.publish(queue, [b"a", b"b"])
    handled: list[bytes] = []

    async def stop_after_first(batch: Sequence[Delivery]) -> None:
        handled.extend(d.body for d in batch)
        await broker.stop_consuming(queue)

    async with asyncio.timeout(WAIT):
        await broker.consume(queue, stop_after_first, batch_size=1)
    assert handled == [b"a"]
    rest = Recorder(1)
    await consume_until(broker, queue, rest, rest.complete)
    assert rest.bodies == [b"b"]


async def test_dependency_outage_in_handler_holds_the_batch_without_counting(
    make_broker: BrokerFactory, queue: str
) -> None:
    broker = await make_broker()
    await broker.publish(queue, [b"event"])

    def store_down_once(batch: Sequence[Delivery]) -> None:
        if len(recorder.batches) == 1:
            raise BackendUnavailable("store is down")

    recorder = Recorder(2, fail=store_down_once)
    await consume_until(broker, queue, recorder, recorder.complete)
    assert [d.delivery_count for batch in recorder.batches for d in batch] == [1, 1]


async def test_queue_depth_counts_waiting_messages(make_broker: BrokerFactory, queue: str) -> None:
    broker = await make_broker()
    await broker.declare(queue)
    assert await broker.queue_depth(queue) == 0
    await broker.publish(queue, [b"1", b"2", b"3"])
    assert await broker.queue_depth(queue) == 3


async def test_no_message_lost_when_a_consumer_closes_mid_stream(make_broker: BrokerFactory, queue: str) -> None:
    first, second = await make_broker(), await make_broker()
    bodies = [b"%d" % i for i in range(300)]
    await first.publish(queue, bodies)
    closing: list[asyncio.Task[None]] = []

    async def close_midway(batch: Sequence[Delivery]) -> None:
        seen.extend(d.body for d in batch)
        if len(seen) >= 100 and not closing:
            closing.append(asyncio.create_task(first.aclose()))  # while this batch is in flight

    seen: list[bytes] = []
    async with asyncio.timeout(WAIT):
        await first.consume(queue, close_midway, batch_size=20, prefetch=60)
        await closing[0]
    assert len(set(seen)) < len(bodies)  # the first consumer really stopped mid-stream
    taker = Recorder(len(bodies))
    done = asyncio.Event()

    async def take_over(batch: Sequence[Delivery]) -> None:
        await taker(batch)
        if set(seen) | set(taker.bodies) == set(bodies):
            done.set()

    await consume_until(second, queue, take_over, done)
    assert set(seen) | set(taker.bodies) == set(bodies)


async def test_publish_of_10000_small_bodies(make_broker: BrokerFactory, queue: str) -> None:
    broker = await make_broker()
    await broker.publish(queue, [b'{"n":%d}' % i for i in range(10_000)])
    assert await broker.queue_depth(queue) == 10_000


# --- behaviour of the in-process broker only ------------------------------------------------------


async def test_memory_publish_waits_while_the_queue_is_full(unique_name: str) -> None:
    async with MemoryBroker("memory://", max_queue_length=2) as broker:
        publish = asyncio.create_task(broker.publish(unique_name, [b"1", b"2", b"3"]))
        await asyncio.sleep(0)
        assert not publish.done()
        assert await broker.queue_depth(unique_name) == 2
        recorder = Recorder(3)
        await consume_until(broker, unique_name, recorder, recorder.complete)
        await publish
        assert recorder.bodies == [b"1", b"2", b"3"]


async def test_memory_queue_is_bounded_in_bytes(unique_name: str) -> None:
    async with MemoryBroker("memory://", max_queue_bytes=10) as broker:
        publish = asyncio.create_task(broker.publish(unique_name, [b"123456", b"7890", b"x"]))
        await asyncio.sleep(0)
        assert not publish.done(), "11 bytes exceed a 10-byte queue"
        assert await broker.queue_depth(unique_name) == 2
        assert broker.is_full(unique_name)
        recorder = Recorder(3)
        await consume_until(broker, unique_name, recorder, recorder.complete)
        await publish
        assert recorder.bodies == [b"123456", b"7890", b"x"]


async def test_memory_queue_takes_one_oversized_message_when_empty(unique_name: str) -> None:
    async with MemoryBroker("memory://", max_queue_bytes=10) as broker:
        async with asyncio.timeout(WAIT):
            await broker.publish(unique_name, [b"x" * 100])
        assert await broker.queue_depth(unique_name) == 1


async def test_memory_offer_refuses_within_its_wait_and_publishes_nothing(unique_name: str) -> None:
    async with MemoryBroker("memory://", max_queue_bytes=10) as broker:
        await broker.publish(unique_name, [b"12345678"])
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(QueueFull, match="full"):
            await broker.offer(unique_name, [b"abc", b"def"], max_wait=0.2)
        assert 0.2 <= loop.time() - started < 1.0
        assert await broker.queue_depth(unique_name) == 1, "all or nothing: no part of a refused offer"
        recorder = Recorder(1)
        await consume_until(broker, unique_name, recorder, recorder.complete)
        await broker.offer(unique_name, [b"abc", b"def"], max_wait=0.2)
        assert await broker.queue_depth(unique_name) == 2


async def test_memory_offer_proceeds_when_room_appears_in_time(unique_name: str) -> None:
    async with MemoryBroker("memory://", max_queue_bytes=10) as broker:
        await broker.publish(unique_name, [b"12345678"])
        offer = asyncio.create_task(broker.offer(unique_name, [b"abc"], max_wait=5))
        await asyncio.sleep(0.05)
        assert not offer.done()
        recorder = Recorder(1)
        await consume_until(broker, unique_name, recorder, recorder.complete)
        async with asyncio.timeout(WAIT):
            await offer  # QueueFull here would mean it gave up although room appeared within its wait
        assert offer.exception() is None


def dead_letter_all(batch: Sequence[Delivery]) -> None:
    for delivery in batch:
        delivery.dead_letter("bad")


async def test_memory_dead_letter_queue_drops_nothing_and_waits_for_space(unique_name: str) -> None:
    async with MemoryBroker("memory://", max_queue_length=2, dead_letter_queue=f"{unique_name}_dlq") as broker:
        await broker.publish(unique_name, [b"1", b"2"])
        recorder = Recorder(2, fail=dead_letter_all)
        await consume_until(broker, unique_name, recorder, recorder.complete)
        await broker.publish(unique_name, [b"3"])
        more = Recorder(1, fail=dead_letter_all)
        # The third dead letter waits for room (the embedded mode's dead-letter worker makes it).
        consumer = asyncio.create_task(broker.consume(unique_name, more))
        await asyncio.sleep(0.1)
        assert await broker.queue_depth(broker.dead_letter_queue) == 2
        reader = Recorder(3)
        await consume_until(broker, broker.dead_letter_queue, reader, reader.complete)
        await broker.stop_consuming(unique_name)
        await consumer
        assert sorted(d.body for batch in reader.batches for d in batch) == [b"1", b"2", b"3"]


async def test_memory_brokers_with_one_url_share_queues(unique_name: str) -> None:
    async with MemoryBroker("memory://") as producer, MemoryBroker("memory://") as consumer:
        await producer.publish(unique_name, [b"shared"])
        assert await consumer.queue_depth(unique_name) == 1


def test_broker_urls_choose_the_backend_with_the_shared_options() -> None:
    memory = create_broker("memory://x", max_deliveries=3, dead_letter_queue="dlq")
    assert isinstance(memory, MemoryBroker)
    assert (memory.max_deliveries, memory.dead_letter_queue) == (3, "dlq")
    rabbitmq = create_broker("amqp://guest:guest@127.0.0.1:5672/", dead_letter_queue="dlq2")
    assert isinstance(rabbitmq, RabbitMQBroker)
    assert (rabbitmq.max_deliveries, rabbitmq.dead_letter_exchange) == (5, "dlq2.dlx")
    with pytest.raises(ValueError, match="unsupported broker URL scheme 'kafka'"):
        create_broker("kafka://127.0.0.1")
