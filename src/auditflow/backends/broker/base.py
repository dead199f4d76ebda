"""The broker contract shared by every implementation.

A message body is bytes (a JSON object or array; encoding is the caller's business). Consumers
receive *batches* of deliveries so that downstream work (window-state round trips, store
transactions) is batched too. A handler acks nothing itself: when it returns, every delivery of the batch that
it did not dead-letter is acknowledged; when it raises, the whole batch is returned to the queue
and redelivered (to this or another consumer), with `delivery_count` incremented. A message
delivered `max_deliveries` times is dead-lettered as poison instead of being handled again.
A handler that raises BackendUnavailable is different: a dependency is down, not the message, so
the batch stays unacknowledged and is retried with back-off without counting a delivery.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from auditflow.lifecycle import AsyncLifecycle


class LocalBody(bytes):
    """A body encoded in this process together with the validated items it was encoded from.

    An in-process broker takes the items off (`take_decoded`) and hands them to the consumer as
    `Delivery.decoded`, so the embedded mode validates each item once, at intake. To any other
    broker it is plain bytes.
    """

    decoded: Any

    def __new__(cls, body: bytes, decoded: Any) -> LocalBody:
        instance = super().__new__(cls, body)
        instance.decoded = decoded
        return instance

    def take_decoded(self) -> Any:
        """The items, once: the body no longer keeps them alive afterwards."""
        decoded, self.decoded = self.decoded, None
        return decoded


@dataclass(slots=True)
class Delivery:
    """One received message. `dead_letter(reason)` routes it to the dead-letter queue on ack."""

    body: bytes
    headers: Mapping[str, Any] = field(default_factory=dict)
    delivery_count: int = 1
    dead_letter_reason: str | None = None
    tag: Any = None  # the backend's handle for acking
    # The body's items as validated by a publisher in this process (see LocalBody), or None:
    # then the consumer decodes the bytes, as it would for any remote publisher.
    decoded: Any = None
    # Why the handler last failed on this delivery, for the dead letter at the delivery limit.
    failure: str | None = None

    def dead_letter(self, reason: str) -> None:
        self.dead_letter_reason = reason


MessageHandler = Callable[[Sequence[Delivery]], Awaitable[None]]


class Broker(AsyncLifecycle):
    """Publish message bodies to named queues and consume them in batches.

    Lifecycle: `await start()` (declare and connect; raise BackendUnavailable when the server is
    down), then `publish`/`consume`, then `await aclose()` which stops consumers after their
    in-flight batch and closes connections. `async with broker:` does both.
    """

    # Queues that live in this process hand bodies over without a copy (see LocalBody), and die
    # with it, so shutdown must drain them first.
    in_process: ClassVar[bool] = False

    def __init__(self, url: str, *, max_deliveries: int = 5, dead_letter_queue: str = "audit_dead_letter") -> None:
        self.url = url
        self.max_deliveries = max_deliveries
        self.dead_letter_queue = dead_letter_queue

    @abc.abstractmethod
    async def declare(self, queue: str) -> None:
        """Create the queue (durable where the backend has durability) if missing."""

    @abc.abstractmethod
    async def publish(self, queue: str, bodies: Sequence[bytes], headers: Mapping[str, Any] | None = None) -> None:
        """Publish each body as one message. Returns once the broker has taken responsibility for
        every one of them (publisher confirms on RabbitMQ); raises BackendUnavailable otherwise."""

    async def offer(
        self, queue: str, bodies: Sequence[bytes], *, max_wait: float, headers: Mapping[str, Any] | None = None
    ) -> None:
        """Publish for a caller that must answer within `max_wait` seconds: an in-process broker
        raises QueueFull rather than wait longer for room. A server broker has its own flow control
        and publishes as usual."""
        await self.publish(queue, bodies, headers)

    def is_full(self, queue: str) -> bool:
        """Whether `offer` would refuse now (in-process queues at their bound)."""
        return False

    @abc.abstractmethod
    async def consume(
        self,
        queue: str,
        handler: MessageHandler,
        *,
        prefetch: int = 200,
        batch_size: int = 100,
        linger_ms: int = 10,
    ) -> None:
        """Run until `stop_consuming()` or `aclose()`: collect up to `batch_size` deliveries (waiting
        at most `linger_ms` after the first), call `handler`, settle the batch as described above."""

    @abc.abstractmethod
    async def stop_consuming(self, queue: str | None = None) -> None:
        """Stop taking new deliveries from `queue` (from every queue when None); the batch in the
        handler finishes and is settled, and the matching `consume()` calls return. Several services
        share one broker in the embedded mode, so stopping one queue must leave the others running."""

    @abc.abstractmethod
    async def queue_depth(self, queue: str) -> int:
        """Messages ready in the queue (for metrics and the bench)."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise BackendUnavailable when the broker cannot be reached."""
