"""Event intake shared by the HTTP API and the generator: validated events are published to the
events queue in batches, and `submit` returns only once the broker has confirmed them."""

from __future__ import annotations

from collections.abc import Sequence

from auditflow.backends.broker import Broker
from auditflow.codec import encode_events
from auditflow.dependencies import Dependency
from auditflow.errors import BackendUnavailable
from auditflow.metrics import EVENTS_INGESTED
from auditflow.model.event import Event


class Ingestor:
    def __init__(self, broker: Broker, dependency: Dependency, queue: str, *, batch_size: int = 500) -> None:
        self.broker = broker
        self.dependency = dependency
        self.queue = queue
        self.batch_size = batch_size
        self._declared = False
        # In-process queues deliver these very bodies: hand the validated events over with them.
        self._local = broker.in_process

    async def submit(self, events: Sequence[Event], *, source: str) -> None:
        """Publish `events`; raises BackendUnavailable when the broker cannot take them now."""
        if not events:
            return
        if not self.dependency.is_up:
            raise BackendUnavailable(f"message broker unavailable: {self.dependency.last_error}")
        try:
            if not self._declared:
                await self.broker.declare(self.queue)
                self._declared = True
            bodies = [
                encode_events(events[i : i + self.batch_size], local=self._local)
                for i in range(0, len(events), self.batch_size)
            ]
            await self.broker.publish(self.queue, bodies)
        except BackendUnavailable as exc:
            self.dependency.mark_down(exc)
            raise
        EVENTS_INGESTED.labels(source).inc(len(events))
