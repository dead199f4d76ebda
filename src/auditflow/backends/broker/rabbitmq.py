"""The RabbitMQ broker (`amqp://`, aio-pika): durable quorum or classic queues, persistent messages
with publisher confirms awaited together, batched consumers with manual acks, and dead-lettering."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, cast

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel, AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from pamqp.commands import Basic
from yarl import URL

from auditflow.backends.broker.base import Broker, Delivery, MessageHandler
from auditflow.backends.broker.batching import (
    COUNT_HEADER,
    Outcome,
    dead_letter_headers,
    mark_failed,
    run_handler,
    split_poison,
)
from auditflow.errors import BackendError, BackendUnavailable

log = logging.getLogger("auditflow.broker.rabbitmq")

# Everything the driver raises when the server is down, the connection drops or a publish is refused.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_EXCEPTIONS, TimeoutError)
PERSISTENT = 2
PUBLISH_WINDOW = 2000  # publishes awaiting their confirm at once; bounds memory, not throughput


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
    ) -> None:
        super().__init__(url, max_deliveries=max_deliveries, dead_letter_queue=dead_letter_queue)
        self.quorum = quorum
        self.connect_timeout = connect_timeout
        self.reconnect_interval = reconnect_interval
        self.publish_timeout = publish_timeout
        self.dead_letter_exchange = f"{dead_letter_queue}.dlx"
        self.queue_types: dict[str, str] = {}  # queue -> "quorum" | "classic" | "existing"
        self._queue_args: dict[str, dict[str, Any]] = {}
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._consumers: set[RabbitMQConsumer] = set()
        self._start_lock = asyncio.Lock()
        parsed = URL(url)
        self._where = f"{parsed.host}:{parsed.port}"  # for messages: never the credentials

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        async with self._start_lock:
            if self._connection is not None and not self._connection.is_closed:
                return
            try:
                connection = await aio_pika.connect_robust(
                    self.url,
                    timeout=self.connect_timeout,
                    reconnect_interval=self.reconnect_interval,
                    client_properties={"connection_name": "auditflow"},
                )
            except DRIVER_ERRORS as exc:
                raise BackendUnavailable(f"RabbitMQ at {self._where} is unreachable: {exc!r}") from exc
            self._connection = connection
            try:
                self._channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                await self._declare_dead_letter()
            except BaseException:
                await self._close_connection()  # leave nothing half-open, so start() can run again
                raise

    async def aclose(self) -> None:
        await self.stop_consuming()
        await self._close_connection()

    async def _close_connection(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self.queue_types.clear()
        self._queue_args.clear()
        if connection is not None:
            with contextlib.suppress(*DRIVER_ERRORS):
                await connection.close()

    def _require_connection(self) -> AbstractRobustConnection:
        connection = self._connection
        if connection is None or connection.is_closed:
            raise BackendUnavailable("RabbitMQ broker is not started")
        if not connection.connected.is_set():
            raise BackendUnavailable(f"RabbitMQ at {self._where} is reconnecting")
        return connection

    async def ping(self) -> None:
        connection = self._require_connection()
        transport = connection.transport
        if transport is None or transport.connection.is_closed:
            raise BackendUnavailable(f"RabbitMQ at {self._where}: connection lost")

    @contextlib.asynccontextmanager
    async def _scratch_channel(self) -> AsyncIterator[aiormq.abc.AbstractChannel]:
        """A plain channel for one declaration: the server closes a channel on a refused declare,
        and a robust channel would reopen and replay it."""
        transport = self._require_connection().transport
        if transport is None:
            raise BackendUnavailable(f"RabbitMQ at {self._where} is reconnecting")
        try:
            channel = await transport.connection.channel()
        except DRIVER_ERRORS as exc:
            raise BackendUnavailable(f"RabbitMQ at {self._where}: cannot open a channel: {exc!r}") from exc
        try:
            yield channel
        finally:
            if not channel.is_closed:
                with contextlib.suppress(*DRIVER_ERRORS):
                    await channel.close()

    # --- topology --------------------------------------------------------------------------------
    async def _declare_durable(self, name: str, arguments: dict[str, Any]) -> str:
        """Declare a durable queue, quorum first; returns the kind that the server accepted."""
        attempts: list[tuple[str, dict[str, Any]]] = []
        if self.quorum:
            attempts.append(("quorum", {**arguments, "x-queue-type": "quorum"}))
        attempts.append(("classic", arguments))
        for kind, args in attempts:
            try:
                async with self._scratch_channel() as channel:
                    await channel.queue_declare(name, durable=True, arguments=args)
            except aiormq.exceptions.AMQPChannelError as exc:
                log.info("queue %s: the server refused a %s queue (%s)", name, kind, exc)
                continue
            except DRIVER_ERRORS as exc:
                raise BackendUnavailable(f"RabbitMQ at {self._where}: declare {name}: {exc!r}") from exc
            self._queue_args[name] = {"durable": True, "arguments": args}
            return kind
        # Exists with other arguments (an older max_deliveries, another type): use it as it is.
        try:
            async with self._scratch_channel() as channel:
                await channel.queue_declare(name, passive=True)
        except aiormq.exceptions.AMQPChannelError as exc:
            raise BackendError(f"RabbitMQ refuses to declare queue {name}: {exc}") from exc
        log.warning("queue %s exists with other arguments than configured; using it unchanged", name)
        self._queue_args[name] = {"passive": True}
        return "existing"

    async def _declare_dead_letter(self) -> None:
        try:
            async with self._scratch_channel() as channel:
                await channel.exchange_declare(self.dead_letter_exchange, exchange_type="fanout", durable=True)
        except DRIVER_ERRORS as exc:
            raise BackendUnavailable(f"RabbitMQ at {self._where}: dead-letter exchange: {exc!r}") from exc
        self.queue_types[self.dead_letter_queue] = await self._declare_durable(self.dead_letter_queue, {})
        try:
            async with self._scratch_channel() as channel:
                await channel.queue_bind(self.dead_letter_queue, self.dead_letter_exchange, routing_key="")
        except DRIVER_ERRORS as exc:
            raise BackendUnavailable(f"RabbitMQ at {self._where}: dead-letter binding: {exc!r}") from exc

    async def declare(self, queue: str) -> None:
        if queue in self.queue_types:
            return
        if self.dead_letter_queue not in self.queue_types:  # forgotten after a failed publish
            await self._declare_dead_letter()
        if queue == self.dead_letter_queue:
            return  # declared above, without a dead-letter exchange of its own (no loop)
        arguments: dict[str, Any] = {"x-dead-letter-exchange": self.dead_letter_exchange}
        if self.quorum:
            arguments["x-delivery-limit"] = self.max_deliveries + 1
        kind = await self._declare_durable(queue, arguments)
        if kind == "classic":
            arguments.pop("x-delivery-limit", None)  # a quorum-only argument
        self.queue_types[queue] = kind

    def queue_arguments(self, queue: str) -> dict[str, Any]:
        """How a consumer channel declares `queue` so that a reconnect can recreate it."""
        return self._queue_args.get(queue, {"passive": True})

    async def queue_depth(self, queue: str) -> int:
        try:
            async with self._scratch_channel() as channel:
                result = await channel.queue_declare(queue, passive=True)
        except aiormq.exceptions.AMQPChannelError:
            return 0  # no such queue: nothing waiting
        except DRIVER_ERRORS as exc:
            raise BackendUnavailable(f"RabbitMQ at {self._where}: queue depth: {exc!r}") from exc
        return int(result.message_count or 0)

    # --- publishing ------------------------------------------------------------------------------
    async def publish(self, queue: str, bodies: Sequence[bytes], headers: Mapping[str, Any] | None = None) -> None:
        await self.declare(queue)
        properties = Basic.Properties(delivery_mode=PERSISTENT, headers=dict(headers) if headers else None)
        await self._publish_all("", queue, [(body, properties) for body in bodies])

    async def _publish_all(self, exchange: str, routing_key: str, items: Sequence[tuple[bytes, Any]]) -> None:
        """Send every message, then await the confirms together: the broker acks in batches, so
        throughput is bounded by bandwidth rather than by one round trip per message."""
        self._require_connection()
        if self._channel is None:
            raise BackendUnavailable("RabbitMQ broker is not started")
        try:
            async with asyncio.timeout(self.publish_timeout):
                # The concrete channel: its basic_publish has `wait`, the abstract one does not.
                channel = cast(aiormq.Channel, await self._channel.get_underlay_channel())
                for start in range(0, len(items), PUBLISH_WINDOW):
                    await asyncio.gather(
                        *(
                            # wait=False: do not hold the channel lock until the socket drained
                            # each message; the confirm below is what makes it safe.
                            channel.basic_publish(
                                body,
                                exchange=exchange,
                                routing_key=routing_key,
                                properties=props,
                                mandatory=True,
                                wait=False,
                            )
                            for body, props in items[start : start + PUBLISH_WINDOW]
                        )
                    )
        except DRIVER_ERRORS as exc:
            # A returned message means the queue vanished (server reset): declare again next time.
            self.queue_types.clear()
            raise BackendUnavailable(f"RabbitMQ at {self._where}: publish to {routing_key!r} failed: {exc!r}") from exc

    async def dead_letter(self, queue: str, deliveries: Sequence[Delivery]) -> None:
        """Route deliveries to the dead-letter queue with the reason and origin in headers."""
        if not deliveries:
            return
        items = [
            (
                d.body,
                Basic.Properties(
                    delivery_mode=PERSISTENT,
                    headers=dead_letter_headers(d.headers, d.dead_letter_reason or "unspecified", queue),
                ),
            )
            for d in deliveries
        ]
        await self._publish_all(self.dead_letter_exchange, queue, items)

    async def republish(self, queue: str, deliveries: Sequence[Delivery]) -> None:
        """Put failed deliveries of a classic queue back at the tail with their delivery count."""
        items = [
            (
                d.body,
                Basic.Properties(delivery_mode=PERSISTENT, headers={**d.headers, COUNT_HEADER: d.delivery_count + 1}),
            )
            for d in deliveries
        ]
        await self._publish_all("", queue, items)

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


def _as_int(value: object, default: int) -> int:
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else default


def _delivery_count(message: AbstractIncomingMessage) -> int:
    headers = message.headers or {}
    if "x-delivery-count" in headers:  # quorum queue: the server counts earlier returns
        return _as_int(headers["x-delivery-count"], 0) + 1
    count = _as_int(headers.get(COUNT_HEADER), 1)
    return count + 1 if message.redelivered else count


def _is_stale(message: AbstractIncomingMessage) -> bool:
    """Delivered on a channel that has since closed: the server has already requeued it."""
    try:
        return bool(message.channel.is_closed)
    except aiormq.exceptions.ChannelInvalidStateError:
        return True


class RabbitMQConsumer:
    """One `consume()` call: its own channel and prefetch, a buffer fed by the server, and a loop
    that cuts the buffer into batches, runs the handler and settles each batch."""

    def __init__(
        self, broker: RabbitMQBroker, queue: str, handler: MessageHandler, prefetch: int, size: int, linger: float
    ) -> None:
        self.broker, self.queue, self.handler = broker, queue, handler
        self.prefetch, self.size, self.linger = prefetch, size, linger
        self.buffer: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
        self.stopping = asyncio.Event()
        self.done = asyncio.Event()
        self.task = asyncio.current_task()
        self._amqp_queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._cancel: asyncio.Task[Any] | None = None

    def stop(self) -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        self.buffer.put_nowait(None)
        if self._amqp_queue is not None and self._tag is not None:
            # Stop the flow now; what arrives meanwhile goes back when the channel closes.
            self._cancel = asyncio.create_task(self._amqp_queue.cancel(self._tag))

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self.buffer.put_nowait(message)

    async def run(self, connection: AbstractRobustConnection) -> None:
        channel: AbstractRobustChannel | None = None
        try:
            channel = await connection.channel(publisher_confirms=False)
            await channel.set_qos(prefetch_count=self.prefetch)
            self._amqp_queue = await channel.declare_queue(self.queue, **self.broker.queue_arguments(self.queue))
            self._tag = await self._amqp_queue.consume(self._on_message)
            while not self.stopping.is_set():
                messages = await self._collect()
                if messages:
                    await self._process(messages)
        except DRIVER_ERRORS as exc:
            raise BackendUnavailable(f"consuming {self.queue!r} failed: {exc!r}") from exc
        finally:
            if self._cancel is not None:
                await asyncio.gather(self._cancel, return_exceptions=True)
            # Closing returns every unacked delivery (prefetched, or of an interrupted batch) to
            # the queue, where another consumer takes it.
            if channel is not None:
                with contextlib.suppress(*DRIVER_ERRORS):
                    await channel.close()
            self.done.set()

    async def _collect(self) -> list[AbstractIncomingMessage]:
        first = await self.buffer.get()
        if first is None:
            return []
        batch = [first]
        deadline = asyncio.get_running_loop().time() + self.linger
        while len(batch) < self.size:
            try:
                item = self.buffer.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.buffer.get(), remaining)
                except TimeoutError:
                    break
            if item is None:
                return []  # stopped before the handler saw them: the channel close returns them
            batch.append(item)
        return [m for m in batch if not _is_stale(m)]

    async def _process(self, messages: list[AbstractIncomingMessage]) -> None:
        batch = [Delivery(m.body, dict(m.headers or {}), _delivery_count(m), tag=m) for m in messages]
        live = split_poison(batch, self.broker.max_deliveries)
        outcome = await run_handler(self.handler, live, self.stopping) if live else Outcome.HANDLED
        try:
            await self._settle(batch, live, outcome)
        except Exception as exc:  # whatever broke, the server still holds the batch
            log.warning("could not settle %d messages of %s, they will be redelivered: %r", len(batch), self.queue, exc)
            with contextlib.suppress(*DRIVER_ERRORS):
                await messages[-1].nack(multiple=True, requeue=True)

    async def _settle(self, batch: list[Delivery], live: list[Delivery], outcome: Outcome) -> None:
        requeue: list[Delivery] = []
        if outcome is Outcome.FAILED:
            requeue = mark_failed(live, self.broker.max_deliveries)
        elif outcome is Outcome.STOPPED:
            requeue = live
        await self.broker.dead_letter(self.queue, [d for d in batch if d.dead_letter_reason is not None])
        if not requeue:
            await batch[-1].tag.ack(multiple=True)
            return
        # Quorum queues count a nack as a delivery; elsewhere the count travels in a header.
        counted_by_server = outcome is Outcome.STOPPED or self.broker.queue_types.get(self.queue) == "quorum"
        if not counted_by_server:
            await self.broker.republish(self.queue, requeue)
        returned = {id(d) for d in requeue} if counted_by_server else set()
        for delivery in batch:
            if id(delivery) in returned:
                await delivery.tag.nack(requeue=True)
            else:
                await delivery.tag.ack()
