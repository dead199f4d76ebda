"""The in-process broker of the embedded mode (`memory://`): bounded asyncio queues with the same
batching, redelivery and dead-letter semantics as RabbitMQ, and no server."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from auditflow.backends.broker.base import Broker, Delivery, LocalBody, MessageHandler
from auditflow.backends.broker.batching import (
    Outcome,
    dead_letter_headers,
    mark_failed,
    run_handler,
    split_poison,
)
from auditflow.backends.broker.memory_queue import BoundedQueue, QueuedMessage, resolve
from auditflow.errors import BackendUnavailable, QueueFull

DEFAULT_MAX_LENGTH = 100_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
HANDOVER_MAX_READY = 64  # messages of a queue that carry validated items (see LocalBody)


class _Hub:
    def __init__(self) -> None:
        self.queues: dict[str, BoundedQueue] = {}
        self.users = 0


# Per event loop, so that a loop's futures never outlive it (each test runs its own loop).
_HUBS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Hub]] = weakref.WeakKeyDictionary()


def _handover(body: bytes, target: BoundedQueue) -> Any:
    """The items a local body carries, kept only while the queue is short: a backlog holds bytes,
    not validated objects several times their size."""
    decoded = body.take_decoded() if isinstance(body, LocalBody) else None
    return decoded if len(target.ready) < HANDOVER_MAX_READY else None


def _first_decoded(message: QueuedMessage) -> Any:
    # A redelivery decodes the bytes: the handler may have failed on the very objects.
    decoded, message.decoded = message.decoded, None
    return decoded


class _Consumer:
    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.stopping = asyncio.Event()
        self.done = asyncio.Event()
        self.task = asyncio.current_task()
        self.waiter: asyncio.Future[None] | None = None

    def stop(self) -> None:
        self.stopping.set()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class MemoryBroker(Broker):
    """In-process queues, and the choices the contract leaves open:

    - Every MemoryBroker of one event loop with the same URL shares its queues, so embedded
      services may each open their own broker.
    - A message returned after a failed batch goes back to the *head* of its queue, in its
      original order (like a requeue on a RabbitMQ classic queue).
    - Publishing waits while a queue holds `max_queue_length` messages or `max_queue_bytes` of
      bodies (backpressure), the dead-letter queue too: the embedded mode moves its messages into
      the store, and nothing is ever dropped. `offer` waits a bounded time and then refuses, for
      intake that must answer its client.
    - There is no prefetch: a consumer takes a batch straight from the queue, so `prefetch` is
      accepted and ignored.
    """

    in_process = True

    def __init__(
        self,
        url: str = "memory://",
        *,
        max_deliveries: int = 5,
        dead_letter_queue: str = "audit_dead_letter",
        max_queue_length: int = DEFAULT_MAX_LENGTH,
        max_queue_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        super().__init__(url, max_deliveries=max_deliveries, dead_letter_queue=dead_letter_queue)
        self.max_queue_length = max_queue_length
        self.max_queue_bytes = max_queue_bytes
        self._hub: _Hub | None = None
        self._consumers: set[_Consumer] = set()

    async def start(self) -> None:
        if self._hub is None:
            hubs = _HUBS.setdefault(asyncio.get_running_loop(), {})
            self._hub = hubs.setdefault(self.url, _Hub())
            self._hub.users += 1

    async def aclose(self) -> None:
        await self.stop_consuming()
        hub, self._hub = self._hub, None
        if hub is not None:
            hub.users -= 1
            hubs = _HUBS.get(asyncio.get_running_loop(), {})
            if hub.users == 0 and hubs.get(self.url) is hub:
                del hubs[self.url]

    def _queue(self, name: str) -> BoundedQueue:
        if self._hub is None:
            raise BackendUnavailable("in-process broker is not started")
        queue = self._hub.queues.get(name)
        if queue is None:
            queue = BoundedQueue(self.max_queue_length, self.max_queue_bytes)
            self._hub.queues[name] = queue
        return queue

    async def declare(self, queue: str) -> None:
        self._queue(queue)

    async def publish(self, queue: str, bodies: Sequence[bytes], headers: Mapping[str, Any] | None = None) -> None:
        shared = dict(headers) if headers else {}
        target = self._queue(queue)
        await target.put([QueuedMessage(body, shared, decoded=_handover(body, target)) for body in bodies])

    async def offer(
        self, queue: str, bodies: Sequence[bytes], *, max_wait: float, headers: Mapping[str, Any] | None = None
    ) -> None:
        """Publish all of `bodies` once the queue has room for all of them, waiting at most `max_wait`
        seconds; else raise QueueFull and publish none, so that a refused request can simply be sent again."""
        target = self._queue(queue)
        probe = [QueuedMessage(body, {}) for body in bodies]
        try:
            async with asyncio.timeout(max_wait):
                while target.ready and target.room_for(probe) < len(probe):
                    await target.wait_for_room()
        except TimeoutError:
            raise QueueFull(
                f"queue {queue} is full ({len(target.ready)} messages, {target.ready_bytes} bytes); retry later"
            ) from None
        await self.publish(queue, bodies, headers)

    def is_full(self, queue: str) -> bool:
        return self._queue(queue).full

    async def consume(
        self,
        queue: str,
        handler: MessageHandler,
        *,
        prefetch: int = 200,
        batch_size: int = 100,
        linger_ms: int = 10,
    ) -> None:
        source = self._queue(queue)
        consumer = _Consumer(queue)
        self._consumers.add(consumer)
        try:
            while not consumer.stopping.is_set():
                messages = await self._collect(source, consumer, batch_size, linger_ms / 1000)
                if messages:
                    await self._process(queue, source, messages, handler, consumer)
                # A full queue and a handler that never awaits would otherwise starve every
                # other task of the process (the API, the publishers, a stop request).
                await asyncio.sleep(0)
        finally:
            self._consumers.discard(consumer)
            consumer.done.set()

    async def _collect(
        self, source: BoundedQueue, consumer: _Consumer, size: int, linger: float
    ) -> list[QueuedMessage]:
        loop = asyncio.get_running_loop()
        batch: list[QueuedMessage] = []
        deadline: float | None = None
        while not consumer.stopping.is_set():
            batch.extend(source.take(size - len(batch)))
            if len(batch) >= size:
                break
            if batch and deadline is None:
                deadline = loop.time() + linger
            if deadline is not None and loop.time() >= deadline:
                break
            consumer.waiter = waiter = loop.create_future()
            source.getters.append(waiter)
            timer = loop.call_later(deadline - loop.time(), resolve, waiter) if deadline is not None else None
            source.collecting += len(batch)
            try:
                await waiter
            except asyncio.CancelledError:
                source.return_to_head(batch)  # taken but never handled: not a delivery
                raise
            finally:
                source.collecting -= len(batch)
                consumer.waiter = None
                if timer is not None:
                    timer.cancel()
        if consumer.stopping.is_set() and batch:
            source.return_to_head(batch)  # taken but never handled: not a delivery
            return []
        return batch

    async def _process(
        self,
        queue: str,
        source: BoundedQueue,
        messages: list[QueuedMessage],
        handler: MessageHandler,
        consumer: _Consumer,
    ) -> None:
        batch = [Delivery(m.body, m.headers, m.delivery_count, tag=m, decoded=_first_decoded(m)) for m in messages]
        live = split_poison(batch, self.max_deliveries)
        outcome = Outcome.HANDLED
        try:
            if live:
                outcome = await run_handler(handler, live, consumer.stopping)
        except asyncio.CancelledError:
            self._return(source, batch)
            raise
        if outcome is Outcome.FAILED:
            self._return(source, mark_failed(live, self.max_deliveries))
        elif outcome is Outcome.STOPPED:
            self._return(source, live)
        dead = [d for d in batch if d.dead_letter_reason is not None]
        if dead:
            await self._queue(self.dead_letter_queue).put(
                [QueuedMessage(d.body, dead_letter_headers(d.headers, d.dead_letter_reason or "", queue)) for d in dead]
            )

    @staticmethod
    def _return(source: BoundedQueue, deliveries: Sequence[Delivery]) -> None:
        returned: list[QueuedMessage] = []
        for delivery in deliveries:
            message: QueuedMessage = delivery.tag
            message.delivery_count += 1
            returned.append(message)
        source.return_to_head(returned)

    async def stop_consuming(self, queue: str | None = None) -> None:
        consumers = [c for c in self._consumers if queue is None or c.queue == queue]
        for consumer in consumers:
            consumer.stop()
        current = asyncio.current_task()
        # A handler may stop its own consumer (store down): it must not wait for itself.
        await asyncio.gather(*(c.done.wait() for c in consumers if c.task is not current))

    async def queue_depth(self, queue: str) -> int:
        # A batch still lingering for more messages counts as waiting: a drain must not stop there.
        source = self._queue(queue)
        return len(source.ready) + source.collecting

    async def ping(self) -> None:
        return None
