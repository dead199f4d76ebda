"""RabbitMQ-only behaviour of the broker: queue-type detection, durability and persistence, the
dead-letter exchange, and how it fails and recovers when the server is unreachable."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aio_pika
import aiormq
import pytest

from auditflow.backends.broker import Delivery
from auditflow.backends.broker.rabbitmq import PERSISTENT, RabbitMQBroker
from auditflow.errors import BackendUnavailable
from tests.conftest import RABBITMQ_URL, WAIT, delete_rabbitmq_topology, require_server


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


class CuttableProxy:
    """A TCP relay to RabbitMQ whose open connections the test can cut, as a network fault would,
    while it keeps accepting new ones."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"amqp://guest:guest@127.0.0.1:{port}/"

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    def cut(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", 5672)
        self.writers += [client_writer, server_writer]

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.transport.abort()

        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))


async def test_consumer_resumes_after_the_connection_drops(
    raw: aio_pika.abc.AbstractConnection, unique_name: str
) -> None:
    queue = f"{unique_name}_q"
    received: list[bytes] = []
    arrived = asyncio.Event()

    async def collect(batch: Sequence[Delivery]) -> None:
        received.extend(d.body for d in batch)
        arrived.set()

    proxy = CuttableProxy()
    async with proxy as url:
        broker = RabbitMQBroker(url, dead_letter_queue=f"{unique_name}_dlq", reconnect_interval=0.2)
        await broker.start()
        try:
            await broker.publish(queue, [b"before"])
            task = asyncio.create_task(broker.consume(queue, collect))
            async with asyncio.timeout(WAIT):
                await arrived.wait()
                proxy.cut()
                while True:  # publishing fails fast while reconnecting, then works again
                    try:
                        await broker.publish(queue, [b"after"])
                        break
                    except BackendUnavailable:
                        await asyncio.sleep(0.05)
                while b"after" not in received:
                    arrived.clear()
                    await arrived.wait()
                await broker.ping()
                await broker.stop_consuming()
                await task
            assert received[0] == b"before"
        finally:
            exchange = broker.dead_letter_exchange
            await broker.aclose()
    await delete_rabbitmq_topology({queue, f"{unique_name}_dlq"}, {exchange})


def _closed_port() -> int:
    """A loopback port where nothing listens (bound, then released)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_node_list_connects_to_the_first_node_that_answers(
    raw: aio_pika.abc.AbstractConnection, unique_name: str
) -> None:
    nobody = f"amqp://guest:guest@127.0.0.1:{_closed_port()}/"
    broker = RabbitMQBroker(f"{nobody},{RABBITMQ_URL}", dead_letter_queue=f"{unique_name}_dlq", connect_timeout=2)
    try:
        await broker.start()
        assert broker.node == "127.0.0.1:5672"
        await broker.publish(f"{unique_name}_q", [b'{"n": 1}'])
        assert await broker.queue_depth(f"{unique_name}_q") == 1
    finally:
        await broker.aclose()
        await delete_rabbitmq_topology({f"{unique_name}_q", f"{unique_name}_dlq"}, {f"{unique_name}_dlq.dlx"})


async def test_a_node_list_with_no_node_up_names_every_node(unique_name: str) -> None:
    ports = [_closed_port(), _closed_port()]
    urls = ",".join(f"amqp://guest:secret@127.0.0.1:{port}/" for port in ports)
    broker = RabbitMQBroker(urls, dead_letter_queue=f"{unique_name}_dlq", connect_timeout=2)
    with pytest.raises(BackendUnavailable, match="no RabbitMQ node reachable") as refused:
        await broker.start()
    assert all(f"127.0.0.1:{port}" in str(refused.value) for port in ports)
    assert "secret" not in str(refused.value)
