"""The RabbitMQ broker (`amqp://`, aio-pika): one robust connection, its lifecycle and health, and
the broker contract on top of the topology, publisher and consumer modules beside this one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import aiormq
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

from auditflow.backends.broker.base import Broker, Delivery, MessageHandler
from auditflow.backends.broker.rabbitmq_consumer import RabbitMQConsumer
from auditflow.backends.broker.rabbitmq_errors import ChannelRefused, ignored_errors, mapped_errors
from auditflow.backends.broker.rabbitmq_failover import FailoverConnection, node_address
from auditflow.backends.broker.rabbitmq_publisher import (
    PERSISTENT,
    Message,
    dead_letter_messages,
    plain_messages,
    publish_confirmed,
    republished_messages,
)
from auditflow.backends.broker.rabbitmq_topology import RabbitMQTopology
from auditflow.backends.broker.urls import split_broker_urls
from auditflow.errors import BackendUnavailable
from auditflow.tls import TlsOptions

__all__ = ["PERSISTENT", "RabbitMQBroker"]

log = logging.getLogger("auditflow.broker.rabbitmq")

# What the server answered about a publish (a returned or nacked message): not a lost connection,
# so publishing again elsewhere would not help.
_REFUSED_PUBLISH = (aiormq.exceptions.PublishError, aiormq.exceptions.DeliveryError)


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

    A cluster is given as several node URLs separated by commas. `start()` connects to the first
    node that answers; when the connection is lost, the robust connection reconnects to the next
    nodes in turn (`FailoverConnection`) and restores the consumers' channels there. A publish
    interrupted by the loss of its node, or made while the connection moves, waits up to
    `failover_timeout` for the connection to come back and publishes every message of the call
    again: the confirms of the lost connection are unknown, so some messages may be stored twice,
    which consumers absorb (analysis de-duplicates events by id, the store merges alerts by id).
    With one URL a lost connection fails the publish at once, as before (the caller retries).
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
        failover_timeout: float = 10.0,
        tls: TlsOptions | None = None,
    ) -> None:
        super().__init__(url, max_deliveries=max_deliveries, dead_letter_queue=dead_letter_queue)
        self.tls = tls
        self.connect_timeout = connect_timeout
        self.reconnect_interval = reconnect_interval
        self.publish_timeout = publish_timeout
        self.urls = split_broker_urls(url)
        # How long a publish waits for the connection to move to another node (cluster only).
        self.failover_timeout = failover_timeout if len(self.urls) > 1 else 0.0
        # For messages: host:port of every node, never the credentials.
        self.where = ",".join(node_address(u) for u in self.urls)
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
        self._channel_lock = asyncio.Lock()

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
            connection = await self._connect()
            self._connection = connection
            try:
                with mapped_errors(self.where, "open the publishing channel"):
                    self._channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                await self.topology.declare_dead_letter()
            except BaseException:
                await self._close_connection()  # leave nothing half-open, so start() can run again
                raise

    async def _connect(self) -> FailoverConnection:
        """The first node, in the configured order, that accepts a connection."""
        failures: list[str] = []
        for first, url in enumerate(self.urls):
            connection = FailoverConnection(
                self.urls,
                first,
                # Used by amqps:// only; without options the URL's own (cafile=..., no_verify_ssl) apply.
                ssl_context=self.tls.ssl_context() if self.tls is not None else None,
                reconnect_interval=self.reconnect_interval,
                client_properties={"connection_name": "auditflow"},
            )
            try:
                with mapped_errors(node_address(url), "connect"):
                    await connection.connect(timeout=self.connect_timeout)
            except BackendUnavailable as exc:
                with ignored_errors():
                    await connection.close()
                if len(self.urls) == 1:
                    raise
                failures.append(str(exc))
                continue
            if first:
                log.warning(
                    "RabbitMQ: connected to %s; earlier nodes refused: %s", connection.node, "; ".join(failures)
                )
            return connection
        raise BackendUnavailable(f"no RabbitMQ node reachable: {'; '.join(failures)}")

    @property
    def node(self) -> str | None:
        """host:port of the node the connection uses (or tries next while it moves), if started."""
        connection = self._connection
        return connection.node if isinstance(connection, FailoverConnection) else None

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
        # In a cluster a connection moving to another node is no outage: wait for it (bounded).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.failover_timeout
        while True:
            await self._wait_connected(deadline)
            transport = self._require_connection().transport
            if transport is not None and not transport.connection.is_closed:
                return
            if loop.time() >= deadline:  # at once with one node
                raise BackendUnavailable(f"RabbitMQ at {self.where}: connection lost")
            await asyncio.sleep(0.05)  # lost, but the connection has not noticed yet

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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.publish_timeout
        attempt = 0
        nacks_until: float | None = None  # nacks are tried again up to failover_timeout after the first failure
        while True:
            attempt += 1
            channel: AbstractRobustChannel | None = None
            try:
                await self._wait_connected(deadline)
                channel = self._channel
                if channel is None:
                    raise BackendUnavailable("RabbitMQ broker is not started")
                with mapped_errors(self.where, f"publish to {routing_key!r}"):
                    async with asyncio.timeout_at(deadline):
                        await publish_confirmed(channel, exchange, routing_key, items)
                if attempt > 1:
                    log.info(
                        "published %d messages to %r again after a failover (attempt %d)",
                        len(items),
                        routing_key,
                        attempt,
                    )
                return
            except BackendUnavailable as exc:
                if nacks_until is None:
                    nacks_until = min(deadline, loop.time() + self.failover_timeout)
                if self._nacked_in_cluster(exc, nacks_until):
                    # A nack: the node did not store the messages. A quorum queue's leader moved
                    # while this channel was new can leave the channel nacking every publish to
                    # that queue (seen with RabbitMQ 3.10): publish again on a fresh channel. A node
                    # that keeps refusing (a queue at its length limit) fails the publish after
                    # failover_timeout rather than holding the caller to the publish timeout.
                    log.warning(
                        "publish of %d messages to %r nacked, publishing them again on a new channel: %s",
                        len(items),
                        routing_key,
                        exc,
                    )
                    with contextlib.suppress(BackendUnavailable):  # reconnecting: the next attempt waits
                        await self._renew_channel(channel)
                    await asyncio.sleep(min(0.05 * 2 ** min(attempt, 5), 1.0))
                    continue
                if self._may_publish_again(exc, deadline):
                    log.warning(
                        "publish of %d messages to %r interrupted, publishing them again once reconnected: %s",
                        len(items),
                        routing_key,
                        exc,
                    )
                    await asyncio.sleep(0.05)  # let the connection notice the loss before waiting on it
                    continue
                # A returned message means the queue vanished (server reset): declare again next time.
                self.queue_types.clear()
                raise

    def _nacked_in_cluster(self, exc: BackendUnavailable, deadline: float) -> bool:
        """A publish the server nacked, in a cluster, with time left."""
        return isinstance(exc.__cause__, aiormq.exceptions.DeliveryError) and self._may_try_again(deadline)

    async def _renew_channel(self, failed: AbstractRobustChannel | None) -> None:
        """Replace the publishing channel, unless a concurrent publish already did."""
        async with self._channel_lock:
            if self._channel is not failed or failed is None:
                return
            connection = self._require_connection()
            with mapped_errors(self.where, "open a new publishing channel"):
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            self._channel = channel
            with ignored_errors():
                await failed.close()

    def _may_publish_again(self, exc: BackendUnavailable, deadline: float) -> bool:
        """A publish interrupted by a lost connection, in a cluster, with time left."""
        if isinstance(exc, ChannelRefused) or isinstance(exc.__cause__, _REFUSED_PUBLISH):
            return False
        return self._may_try_again(deadline)

    def _may_try_again(self, deadline: float) -> bool:
        """In a cluster, with the connection not closed for good and time left before `deadline`."""
        connection = self._connection
        return (
            bool(self.failover_timeout)
            and connection is not None
            and not connection.is_closed
            and asyncio.get_running_loop().time() < deadline
        )

    async def _wait_connected(self, deadline: float) -> None:
        """Return once the connection is up; in a cluster wait for a failover in progress (at most
        `failover_timeout`, and not beyond `deadline`), else fail at once."""
        connection = self._connection
        if connection is None or connection.is_closed or not self.failover_timeout:
            self._require_connection()
            return
        if not connection.connected.is_set():
            remaining = min(self.failover_timeout, deadline - asyncio.get_running_loop().time())
            try:
                async with asyncio.timeout(max(remaining, 0.0)):
                    await connection.connected.wait()
            except TimeoutError:
                pass
        self._require_connection()

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
