"""The RabbitMQ broker (`amqp://`, aio-pika): one robust connection, its lifecycle and health, and
the broker contract on top of the topology, publisher and consumer modules beside this one."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import aio_pika
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from yarl import URL

from auditflow.backends.broker.base import Broker, Delivery, MessageHandler
from auditflow.backends.broker.rabbitmq_consumer import RabbitMQConsumer
from auditflow.backends.broker.rabbitmq_errors import ignored_errors, mapped_errors
from auditflow.backends.broker.rabbitmq_publisher import (
    PERSISTENT,
    Message,
    dead_letter_messages,
    plain_messages,
    publish_confirmed,
    republished_messages,
)
from auditflow.backends.broker.rabbitmq_topology import RabbitMQTopology
from auditflow.errors import BackendUnavailable
from auditflow.tls import TlsOptions

__all__ = ["PERSISTENT", "RabbitMQBroker"]


class RabbitMQBroker(Broker):
    """One connection; one publishing channel with confirms; one channel per `consume()` call so
    that its prefetch and `multiple` acks concern that consumer only.

    Queues are quorum queues unless the server refuses them (then classic durable; an existing
    queue with other arguments is used as it is). Delivery counting: quorum queues count for us
    (`x-delivery-count`, and `x-delivery-limit` one above `max_deliveries` as the server's own
    stop for consumers that crash on a message). Classic queues only say "redelivered", so a
    failed message is republished with a counter header and the original acked; its copy goes to
    the tail of the queue. Dead letters go through a fanout exchange `<dead_letter_queue>.dlx`,
    which every main queue also names as its `x-dead-letter-exchange`.
    """

    def __init__(
        self,
        url: str,
        *,
        max_deliveries: int = 5,
        dead_letter_queue: str = "audit_dead_letter",
        quorum: bool = True,
        connect_timeout: float = 5.0,
        reconnect_interval: float = 2.0,
        publish_timeout: float = 30.0,
        tls: TlsOptions | None = None,
    ) -> None:
        super().__init__(url, max_deliveries=max_deliveries, dead_letter_queue=dead_letter_queue)
        self.tls = tls
        self.connect_timeout = connect_timeout
        self.reconnect_interval = reconnect_interval
        self.publish_timeout = publish_timeout
        parsed = URL(url)
        self.where = f"{parsed.host}:{parsed.port}"  # for messages: never the credentials
        self.topology = RabbitMQTopology(
            self._require_connection,
            self.where,
            quorum=quorum,
            max_deliveries=max_deliveries,
            dead_letter_queue=dead_letter_queue,
        )
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._consumers: set[RabbitMQConsumer] = set()
        self._start_lock = asyncio.Lock()

    @property
    def quorum(self) -> bool:
        return self.topology.quorum

    @property
    def dead_letter_exchange(self) -> str:
        return self.topology.dead_letter_exchange

    @property
    def queue_types(self) -> dict[str, str]:
        """queue -> "quorum" | "classic" | "existing", for the queues declared on this connection."""
        return self.topology.queue_types

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        async with self._start_lock:
            if self._connection is not None and not self._connection.is_closed:
                return
            with mapped_errors(self.where, "connect"):
                connection = await aio_pika.connect_robust(
                    self.url,
                    # Used by amqps:// only; without options the URL's own (cafile=..., no_verify_ssl) apply.
                    ssl_context=self.tls.ssl_context() if self.tls is not None else None,
                    timeout=self.connect_timeout,
                    reconnect_interval=self.reconnect_interval,
                    client_properties={"connection_name": "auditflow"},
                )
            self._connection = connection
            try:
                with mapped_errors(self.where, "open the publishing channel"):
                    self._channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                await self.topology.declare_dead_letter()
            except BaseException:
                await self._close_connection()  # leave nothing half-open, so start() can run again
                raise

    async def aclose(self) -> None:
        await self.stop_consuming()
        await self._close_connection()

    async def _close_connection(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self.topology.forget()
        if connection is not None:
            with ignored_errors():
                await connection.close()

    def _require_connection(self) -> AbstractRobustConnection:
        connection = self._connection
        if connection is None or connection.is_closed:
            raise BackendUnavailable("RabbitMQ broker is not started")
        if not connection.connected.is_set():
            raise BackendUnavailable(f"RabbitMQ at {self.where} is reconnecting")
        return connection

    async def ping(self) -> None:
        connection = self._require_connection()
        transport = connection.transport
        if transport is None or transport.connection.is_closed:
            raise BackendUnavailable(f"RabbitMQ at {self.where}: connection lost")

    # --- topology --------------------------------------------------------------------------------
    async def declare(self, queue: str) -> None:
        await self.topology.declare(queue)

    def queue_arguments(self, queue: str) -> dict[str, Any]:
        return self.topology.queue_arguments(queue)

    async def queue_depth(self, queue: str) -> int:
        return await self.topology.queue_depth(queue)

    # --- publishing ------------------------------------------------------------------------------
    async def publish(self, queue: str, bodies: Sequence[bytes], headers: Mapping[str, Any] | None = None) -> None:
        await self.declare(queue)
        await self._publish_all("", queue, plain_messages(bodies, headers))

    async def _publish_all(self, exchange: str, routing_key: str, items: Sequence[Message]) -> None:
        self._require_connection()
        if self._channel is None:
            raise BackendUnavailable("RabbitMQ broker is not started")
        try:
            with mapped_errors(self.where, f"publish to {routing_key!r}"):
                async with asyncio.timeout(self.publish_timeout):
                    await publish_confirmed(self._channel, exchange, routing_key, items)
        except BackendUnavailable:
            # A returned message means the queue vanished (server reset): declare again next time.
            self.queue_types.clear()
            raise

    async def dead_letter(self, queue: str, deliveries: Sequence[Delivery]) -> None:
        """Route deliveries to the dead-letter queue with the reason and origin in headers."""
        if deliveries:
            await self._publish_all(self.dead_letter_exchange, queue, dead_letter_messages(queue, deliveries))

    async def republish(self, queue: str, deliveries: Sequence[Delivery]) -> None:
        """Put failed deliveries of a classic queue back at the tail with their delivery count."""
        await self._publish_all("", queue, republished_messages(deliveries))

    # --- consuming -------------------------------------------------------------------------------
    async def consume(
        self,
        queue: str,
        handler: MessageHandler,
        *,
        prefetch: int = 200,
        batch_size: int = 100,
        linger_ms: int = 10,
    ) -> None:
        consumer = RabbitMQConsumer(self, queue, handler, prefetch, batch_size, linger_ms / 1000)
        self._consumers.add(consumer)  # before any await, so that a stop meanwhile is not missed
        try:
            await self.declare(queue)
            await consumer.run(self._require_connection())
        finally:
            self._consumers.discard(consumer)
            consumer.done.set()

    async def stop_consuming(self, queue: str | None = None) -> None:
        consumers = [c for c in self._consumers if queue is None or c.queue == queue]
        for consumer in consumers:
            consumer.stop()
        current = asyncio.current_task()
        # A handler may stop its own consumer (store down): it must not wait for itself.
        await asyncio.gather(*(c.done.wait() for c in consumers if c.task is not current))
