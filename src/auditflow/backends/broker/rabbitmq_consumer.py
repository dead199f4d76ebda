"""One consumer of the RabbitMQ broker: its own channel and prefetch, a buffer fed by the server,
batches cut from it, the handler run through `batching`, and each batch settled with acks, nacks,
dead letters or classic-queue republishes."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel, AbstractRobustConnection

from auditflow.backends.broker.base import Delivery, MessageHandler
from auditflow.backends.broker.batching import COUNT_HEADER, Outcome, mark_failed, run_handler, split_poison
from auditflow.backends.broker.rabbitmq_errors import ignored_errors, mapped_errors
from auditflow.errors import BackendUnavailable

if TYPE_CHECKING:
    from auditflow.backends.broker.rabbitmq import RabbitMQBroker

log = logging.getLogger("auditflow.broker.rabbitmq")


def _as_int(value: object, default: int) -> int:
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else default


def delivery_count(message: AbstractIncomingMessage) -> int:
    headers = message.headers or {}
    if "x-delivery-count" in headers:  # quorum queue: the server counts earlier returns
        return _as_int(headers["x-delivery-count"], 0) + 1
    count = _as_int(headers.get(COUNT_HEADER), 1)
    return count + 1 if message.redelivered else count


def _is_stale(message: AbstractIncomingMessage, where: str) -> bool:
    """Delivered on a channel that has since closed: the server has already requeued it."""
    try:
        with mapped_errors(where, "channel state"):
            return bool(message.channel.is_closed)
    except BackendUnavailable:
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
            with mapped_errors(self.broker.where, f"consuming {self.queue!r}"):
                channel = await connection.channel(publisher_confirms=False)
                await channel.set_qos(prefetch_count=self.prefetch)
                self._amqp_queue = await channel.declare_queue(self.queue, **self.broker.queue_arguments(self.queue))
                self._tag = await self._amqp_queue.consume(self._on_message)
                while not self.stopping.is_set():
                    messages = await self._collect()
                    if messages:
                        await self._process(messages)
        finally:
            if self._cancel is not None:
                await asyncio.gather(self._cancel, return_exceptions=True)
            # Closing returns every unacked delivery (prefetched, or of an interrupted batch) to
            # the queue, where another consumer takes it.
            if channel is not None:
                with ignored_errors():
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
        return [m for m in batch if not _is_stale(m, self.broker.where)]

    async def _process(self, messages: list[AbstractIncomingMessage]) -> None:
        batch = [Delivery(m.body, dict(m.headers or {}), delivery_count(m), tag=m) for m in messages]
        live = split_poison(batch, self.broker.max_deliveries)
        outcome = await run_handler(self.handler, live, self.stopping) if live else Outcome.HANDLED
        try:
            with mapped_errors(self.broker.where, f"settling a batch of {self.queue!r}"):
                await self._settle(batch, live, outcome)
        except Exception as exc:  # whatever broke, the server still holds the batch
            log.warning("could not settle %d messages of %s, they will be redelivered: %r", len(batch), self.queue, exc)
            with ignored_errors():
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
