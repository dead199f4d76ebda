"""Event intake shared by the HTTP API and the generator: validated events are published to the
events queue in batches, and `submit` returns only once the broker has confirmed them, or refuses
within `max_wait` seconds when an in-process queue is full (back-pressure the client can see)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from auditflow import tracing
from auditflow.backends.broker import Broker
from auditflow.backends.broker.batching import INGESTED_AT_HEADER
from auditflow.codec import encode_events
from auditflow.dependencies import Dependency
from auditflow.errors import BackendUnavailable, QueueFull
from auditflow.metrics import EVENTS_INGESTED
from auditflow.model.event import Event
from auditflow.model.limits import EventTimeBounds

log = logging.getLogger("auditflow.ingest")

DEFAULT_TIME_BOUNDS = EventTimeBounds.from_seconds(max_future=300, max_age=0)

# How long readiness keeps showing a refusal: long enough for a probe period to notice it.
REFUSAL_SHOWN_S = 10.0


class Ingestor:
    def __init__(
        self,
        broker: Broker,
        dependency: Dependency,
        queue: str,
        *,
        batch_size: int = 500,
        max_wait: float = 0.5,
        time_bounds: EventTimeBounds = DEFAULT_TIME_BOUNDS,
    ) -> None:
        self.broker = broker
        self.dependency = dependency
        self.queue = queue
        self.batch_size = batch_size
        self.max_wait = max_wait
        self.last_refusal: tuple[float, str] | None = None  # monotonic time and reason
        # What event times clients may send (`event_max_future`, `event_max_age`), checked by the API.
        self.time_bounds = time_bounds
        self._declared = False
        # In-process queues deliver these very bodies: hand the validated events over with them.
        self._local = broker.in_process

    @property
    def in_process(self) -> bool:
        """The events queue is consumed in this process, which takes the validated events with
        the bodies: `submit` them; otherwise their wire form will do (`submit_wire`)."""
        return self._local

    async def submit(self, events: Sequence[Event], *, source: str, refuse_when_full: bool = False) -> None:
        """Publish `events`; raises BackendUnavailable when the broker cannot take them now."""
        if not events:
            return
        await self._publish(
            lambda: [
                encode_events(events[i : i + self.batch_size], local=self._local)
                for i in range(0, len(events), self.batch_size)
            ],
            len(events),
            source,
            refuse_when_full,
        )

    async def submit_wire(
        self, rows: Sequence[Mapping[str, Any]], *, source: str, refuse_when_full: bool = False
    ) -> None:
        """`submit` for events already validated into their wire form (`model.fastpath.fast_wire_events`):
        the same bodies, written without building the events."""
        if not rows:
            return
        await self._publish(
            lambda: [orjson.dumps(rows[i : i + self.batch_size]) for i in range(0, len(rows), self.batch_size)],
            len(rows),
            source,
            refuse_when_full,
        )

    async def submit_body(self, body: bytes, count: int, *, source: str, refuse_when_full: bool = False) -> None:
        """Publish a request body as it was sent, as one message: for a body that
        `model.fastpath.fast_event_ids` accepted (every event carries its id and time, so decoding
        it gives the events its wire form would) and of at most `batch_size` events."""
        if count > self.batch_size:
            raise ValueError(f"{count} events in one body; at most {self.batch_size} go out as one message")
        await self._publish(lambda: [body], count, source, refuse_when_full)

    async def _publish(
        self, encode: Callable[[], list[bytes]], count: int, source: str, refuse_when_full: bool
    ) -> None:
        if not self.dependency.is_up:
            raise BackendUnavailable(f"message broker unavailable: {self.dependency.last_error}")
        try:
            if not self._declared:
                await self.broker.declare(self.queue)
                self._declared = True
            bodies = encode()
            headers: dict[str, Any] = {INGESTED_AT_HEADER: int(time.time() * 1000)}
            with tracing.publishing("ingest publish", self.queue, headers, messages=len(bodies), items=count) as span:
                if span is not None:
                    span.set_attribute("auditflow.source", source)
                if refuse_when_full:
                    # A client waits for the answer: refuse after max_wait rather than hold it open.
                    await self.broker.offer(self.queue, bodies, max_wait=self.max_wait, headers=headers)
                else:
                    # Our own producers (generator, file ingest, syslog, bench) simply wait for room.
                    await self.broker.publish(self.queue, bodies, headers)
                log.debug("published %d %s event(s) in %d message(s)", count, source, len(bodies))
        except QueueFull as exc:
            # The broker works, it is only full: the client retries, the dependency stays up.
            self.last_refusal = (time.monotonic(), str(exc))
            raise
        except BackendUnavailable as exc:
            self.dependency.mark_down(exc)
            raise
        EVENTS_INGESTED.labels(source).inc(count)

    def refusing(self) -> str | None:
        """Why intake refuses events now or did so recently, else None (for readiness)."""
        if self._declared and self.broker.is_full(self.queue):
            return f"queue {self.queue} is full; event submissions answer 503 until analysis catches up"
        if self.last_refusal is not None and time.monotonic() - self.last_refusal[0] < REFUSAL_SHOWN_S:
            return self.last_refusal[1]
        return None
