"""A queue consumer with an explicit lifecycle, shared by the analysis and notification services.

It waits for the broker, consumes in batches, restarts consumption when the broker connection is
lost, and on shutdown stops intake and lets the in-flight batch finish and be acknowledged. A batch
that fails for any reason but a dependency being down goes through poison isolation (`poison.py`):
only the message or item that fails alone is dead-lettered, the rest of the batch is processed.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from auditflow import tracing
from auditflow.backends.broker import Broker, Delivery
from auditflow.backends.broker.batching import dead_letter_headers
from auditflow.dependencies import Dependency
from auditflow.errors import BackendUnavailable
from auditflow.metrics import QUEUE_DEPTH
from auditflow.retry import CONSUMER_BACKOFF, Attempts, pause, wait_unless_stopped
from auditflow.services.poison import isolate

log = logging.getLogger("auditflow.worker")

DEPTH_SAMPLE_INTERVAL = 5.0  # seconds between samples of the consumed queue's depth (a metric)


class QueueWorker(abc.ABC):
    name = "worker"
    isolates_poison = True

    def __init__(
        self,
        broker: Broker,
        broker_dependency: Dependency,
        queue: str,
        *,
        dead_letter_queue: str,
        prefetch: int,
        batch_size: int,
        linger_ms: int,
    ) -> None:
        self.broker = broker
        self.broker_dependency = broker_dependency
        self.queue = queue
        self.dead_letter_queue = dead_letter_queue
        self.prefetch = prefetch
        self.batch_size = batch_size
        self.linger_ms = linger_ms
        self.stopping = asyncio.Event()
        self.in_flight = 0
        # Item dead letters of the attempt under way: published only if the attempt succeeds, so
        # that the attempts of a poison search do not dead-letter the same item several times.
        self._pending: list[tuple[list[bytes], str]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._sampler: asyncio.Task[None] | None = None

    @abc.abstractmethod
    async def handle(self, deliveries: Sequence[Delivery]) -> None:
        """Process one batch; return only once its effects are durable."""

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"worker:{self.name}")
        self._sampler = asyncio.create_task(self._sample_depth(), name=f"worker:{self.name}:depth")

    async def _sample_depth(self) -> None:
        """Publish the depth of the consumed queue as `auditflow_queue_depth`: a backlog that keeps
        growing means this service cannot keep up (an alerting rule watches it)."""
        gauge = QUEUE_DEPTH.labels(self.queue)
        while not self.stopping.is_set():
            if self.broker_dependency.is_up:
                try:
                    gauge.set(await self.broker.queue_depth(self.queue))
                except Exception as exc:  # a metric: the consumer loop reports the broker's state
                    log.debug("queue depth of %s not sampled: %s", self.queue, exc)
            await pause(self.stopping, DEPTH_SAMPLE_INTERVAL)

    async def _run(self) -> None:
        # Restarts back off like every other wait for a dependency, and a stop ends the wait.
        attempts = Attempts(CONSUMER_BACKOFF, self.stopping)
        while not self.stopping.is_set():
            if await wait_unless_stopped(self.stopping, self.broker_dependency.wait_up()):
                return
            try:
                await self.broker.declare(self.queue)
                await self.broker.consume(
                    self.queue,
                    self._handle_counted,
                    prefetch=self.prefetch,
                    batch_size=self.batch_size,
                    linger_ms=self.linger_ms,
                )
                attempts.reset()
            except BackendUnavailable as exc:
                self.broker_dependency.mark_down(exc)
                await attempts.pause()
            except Exception:
                log.exception("%s consumer failed; restarting", self.name, extra={"queue": self.queue})
                await attempts.pause()

    async def _handle_counted(self, deliveries: Sequence[Delivery]) -> None:
        self.in_flight += 1
        try:
            with tracing.consuming(f"{self.name} batch", self.queue, deliveries):
                await self._handle_isolated(deliveries)
        finally:
            self.in_flight -= 1

    async def _handle_isolated(self, deliveries: Sequence[Delivery]) -> None:
        if not self.isolates_poison:
            await self._attempt(deliveries)
            return
        for poison in await isolate(self._attempt, deliveries):
            log.error("dead-lettering a poison %s: %s", "message" if poison.whole else "item", poison.reason)
            if poison.whole:
                poison.delivery.dead_letter(poison.reason)  # the broker routes it when it acks
            else:
                await self._publish_dead_letters([poison.delivery.body], poison.reason, poison.delivery.headers)

    async def _attempt(self, deliveries: Sequence[Delivery]) -> None:
        self._pending = []
        try:
            await self.handle(deliveries)
            pending = self._pending
        finally:
            self._pending = None
        for bodies, reason in pending:
            await self._publish_dead_letters(bodies, reason)

    async def dead_letter(self, raws: Sequence[Any], reason: str) -> None:
        """Route invalid items of a valid message to the dead-letter queue, reason in the headers;
        published once the batch has been handled."""
        body = orjson.dumps(list(raws), default=str)
        if self._pending is not None:
            self._pending.append(([body], reason))
        else:
            await self._publish_dead_letters([body], reason)

    async def _publish_dead_letters(
        self, bodies: list[bytes], reason: str, headers: Mapping[str, Any] | None = None
    ) -> None:
        log.warning("dead-lettering %d item(s): %s", len(bodies), reason, extra={"queue": self.queue})
        # An item cut out of a message keeps the batch's correlation id and trace context.
        origin = headers if headers is not None else tracing.context_headers()
        await self.broker.publish(
            self.dead_letter_queue, bodies, headers=dead_letter_headers(origin, reason, self.queue)
        )

    async def stop(self) -> None:
        """Stop intake; the in-flight batch finishes and is settled."""
        self.stopping.set()
        with contextlib.suppress(BackendUnavailable):
            await self.broker.stop_consuming(self.queue)
        if self._sampler is not None:
            await self._sampler  # wakes at once: `pause` ends on the stop event
            self._sampler = None
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 5.0)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
