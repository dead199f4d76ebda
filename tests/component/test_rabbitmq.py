"""RabbitMQ-only behaviour of the broker: queue-type detection, durability and persistence, the
dead-letter exchange, and how it fails and recovers when the server is unreachable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aio_pika
import aiormq
import pytest

from auditflow.backends.broker import Delivery
from auditflow.backends.broker.rabbitmq import PERSISTENT, RabbitMQBroker
from auditflow.errors import BackendUnavailable
from tests.conftest import RABBITMQ_URL, require_server
from tests.contract.test_broker import WAIT, delete_rabbitmq_topology


@pytest.fixture
async def raw() -> AsyncIterator[aio_pika.abc.AbstractConnection]:
    """A plain connection to inspect the server behind the broker's back."""
    require_server("rabbitmq")
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        yield connection


@pytest.fixture
async def broker(raw: aio_pika.abc.AbstractConnection, unique_name: str) -> AsyncIterator[RabbitMQBroker]:
    broker = RabbitMQBroker(RABBITMQ_URL, dead_letter_queue=f"{unique_name}_dlq")
    await broker.start()
    yield broker
    await broker.aclose()
    queues = {f"{unique_name}_q", broker.dead_letter_queue}
    await delete_rabbitmq_topology(queues, {broker.dead_letter_exchange})


async def refuses(raw: aio_pika.abc.AbstractConnection, queue: str, **options: Any) -> bool:
    """Whether the server refuses to declare `queue` with these options (on a throwaway channel)."""
    channel = await raw.channel()
    try:
        await channel.declare_queue(queue, **options)
    except aiormq.exceptions.ChannelPreconditionFailed:
        return True
    await channel.close()
    return False


async def test_quorum_queue_is_preferred(
    broker: RabbitMQBroker, raw: aio_pika.abc.AbstractConnection, unique_name: str
) -> None:
    queue = f"{unique_name}_q"
    await broker.declare(queue)
    assert broker.queue_types[queue] == "quorum"
    assert await refuses(raw, queue, durable=True, arguments={"x-queue-type": "classic"})


async def test_existing_classic_queue_is_detected_and_used(
    broker: RabbitMQBroker, raw: aio_pika.abc.AbstractConnection, unique_name: str
) -> None:
    queue = f"{unique_name}_q"
    channel = await raw.channel()
    await channel.declare_queue(queue, durable=True, arguments={"x-dead-letter-exchange": broker.dead_letter_exchange})
    await broker.declare(queue)
    assert broker.queue_types[queue] == "classic"
    await broker.publish(queue, [b"works"])
    assert await broker.queue_depth(queue) == 1


async def test_queue_with_other_arguments_is_used_unchanged(
    broker: RabbitMQBroker, raw: aio_pika.abc.AbstractConnection, unique_name: str
) -> None:
    queue = f"{unique_name}_q"
    channel = await raw.channel()
    await channel.declare_queue(queue, durable=True, arguments={"x-max-length": 1000})
    await broker.declare(queue)
    assert broker.queue_types[queue] == "existing"
    await broker.publish(queue, [b"works"])
    assert await broker.queue_depth(queue) == 1


async def test_queues_are_durable_and_messages_persistent(
    raw: aio_pika.abc.AbstractConnection, unique_name: str
) -> None:
    # Classic queues, since a quorum queue is durable by definition and the check below would
    # be refused for that reason alone.
    queue = f"{unique_name}_q"
    async with RabbitMQBroker(RABBITMQ_URL, quorum=False, dead_letter_queue=f"{unique_name}_dlq") as classic:
        await classic.publish(queue, [b"kept"], headers={"x-source": "api"})
        assert classic.queue_types[queue] == "classic"
        exchange = classic.dead_letter_exchange
    try:
        assert await refuses(raw, queue, durable=False)
        assert await refuses(raw, f"{unique_name}_dlq", durable=False)
        channel = await raw.channel()
        message = await (await channel.get_queue(queue, ensure=False)).get(timeout=5)
        assert message is not None
        assert message.body == b"kept"
        assert message.delivery_mode == PERSISTENT
        assert message.headers["x-source"] == "api"
        await message.ack()
    finally:
        await delete_rabbitmq_topology({queue, f"{unique_name}_dlq"}, {exchange})


async def test_message_rejected_by_any_consumer_reaches_the_dead_letter_queue(
    broker: RabbitMQBroker, raw: aio_pika.abc.AbstractConnection, unique_name: str
) -> None:
    queue = f"{unique_name}_q"
    await broker.publish(queue, [b"refused"])
    channel = await raw.channel()
    message = await (await channel.get_queue(queue, ensure=False)).get(timeout=5)
    assert message is not None
    await message.reject(requeue=False)  # a consumer outside the platform
    letters: list[Delivery] = []
    got = asyncio.Event()

    async def collect(batch: Sequence[Delivery]) -> None:
        letters.extend(batch)
        got.set()

    task = asyncio.create_task(broker.consume(broker.dead_letter_queue, collect))
    async with asyncio.timeout(WAIT):
        await got.wait()
        await broker.stop_consuming()
        await task
    assert [letter.body for letter in letters] == [b"refused"]


async def test_publish_after_the_queue_was_deleted_declares_it_again(
    broker: RabbitMQBroker, raw: aio_pika.abc.AbstractConnection, unique_name: str
) -> None:
    queue = f"{unique_name}_q"
    await broker.publish(queue, [b"first"])
    channel = await raw.channel()
    await channel.queue_delete(queue, if_unused=False, if_empty=False)
    with pytest.raises(BackendUnavailable):
        await broker.publish(queue, [b"unroutable"])  # returned by the server: not taken
    await broker.publish(queue, [b"second"])
    assert await broker.queue_depth(queue) == 1


async def test_unreachable_server_raises_backend_unavailable_without_the_password() -> None:
    broker = RabbitMQBroker("amqp://guest:s3cret-pass@127.0.0.1:1/", connect_timeout=2.0)
    for _ in range(2):  # start() can be retried after a failure
        with pytest.raises(BackendUnavailable) as failure:
            await broker.start()
        assert "s3cret-pass" not in str(failure.value)
    with pytest.raises(BackendUnavailable):
        await broker.ping()
    with pytest.raises(BackendUnavailable):
        await broker.publish("anything", [b"x"])
    await broker.aclose()


async def test_broker_restarts_after_close(broker: RabbitMQBroker, unique_name: str) -> None:
    queue = f"{unique_name}_q"
    await broker.ping()
    await broker.aclose()
    with pytest.raises(BackendUnavailable):
        await broker.ping()
    await broker.start()
    await broker.publish(queue, [b"again"])
    assert await broker.queue_depth(queue) == 1
