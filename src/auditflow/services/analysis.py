"""The analysis service: consumes event batches, applies the rules through the window state, and
publishes alerts. A batch is acknowledged only after its alerts are confirmed by the broker."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from auditflow import tracing
from auditflow.backends.broker import Broker, Delivery
from auditflow.backends.broker.batching import INGESTED_AT_HEADER
from auditflow.backends.state import WindowState
from auditflow.codec import decode_events, encode_alerts
from auditflow.dependencies import Dependency
from auditflow.metrics import ALERTS_PUBLISHED, BATCH_SECONDS, DETECTION_LATENCY, DETECTIONS, EVENTS_ANALYZED
from auditflow.model.alert import Alert
from auditflow.model.event import Event
from auditflow.model.limits import EventTimeBounds
from auditflow.retry import call_with_recovery
from auditflow.rules import Detector, RuleSet
from auditflow.services.worker import QueueWorker

log = logging.getLogger("auditflow.analysis")

# Events per window-state call. A large consumed batch (100 messages of 500 events) would otherwise
# be one script run of a second or more, during which Redis answers no other client; chunks also
# let the decoding of the next messages overlap with the state call of the previous ones.
DETECT_CHUNK = 2000


class AnalysisService(QueueWorker):
    name = "analysis"

    def __init__(
        self,
        broker: Broker,
        broker_dependency: Dependency,
        state: WindowState,
        state_dependency: Dependency,
        rules: Callable[[], RuleSet],
        *,
        events_queue: str,
        alerts_queue: str,
        dead_letter_queue: str,
        prefetch: int = 200,
        batch_size: int = 100,
        linger_ms: int = 10,
        publish_batch_size: int = 500,
        time_bounds: EventTimeBounds | None = None,
    ) -> None:
        super().__init__(
            broker,
            broker_dependency,
            events_queue,
            dead_letter_queue=dead_letter_queue,
            prefetch=prefetch,
            batch_size=batch_size,
            linger_ms=linger_ms,
        )
        self.alerts_queue = alerts_queue
        # Only the future limit: a backlog in the queue must not age accepted events into rejection.
        self.time_bounds = time_bounds.without_age_limit() if time_bounds is not None else None
        self.state_dependency = state_dependency
        self.detector = Detector(state, rules)
        self.publish_batch_size = publish_batch_size
        self._local = broker.in_process  # see LocalBody

    async def handle(self, deliveries: Sequence[Delivery]) -> None:
        started = time.perf_counter()
        alerts: list[Alert] = []
        chunk: list[Event] = []
        analysed = 0
        running: asyncio.Task[list[Alert]] | None = None
        try:
            for delivery in deliveries:
                items = await self._decode(delivery)
                chunk.extend(items)
                analysed += len(items)
                if len(chunk) >= DETECT_CHUNK:
                    running = await self._next_chunk(running, chunk, alerts)
                    chunk = []
            if chunk:
                running = await self._next_chunk(running, chunk, alerts)
            if running is not None:
                alerts.extend(await running)
        finally:
            if running is not None and not running.done():
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
        if not analysed:
            return
        if alerts:
            bodies = [
                encode_alerts(alerts[i : i + self.publish_batch_size], local=self._local)
                for i in range(0, len(alerts), self.publish_batch_size)
            ]
            headers: dict[str, Any] = {}

            async def publish() -> None:
                await self.broker.publish(self.alerts_queue, bodies, headers)

            with tracing.publishing(
                "analysis publish alerts", self.alerts_queue, headers, messages=len(bodies), items=len(alerts)
            ):
                await call_with_recovery(publish, self.broker_dependency, self.stopping)
            ALERTS_PUBLISHED.labels("alert").inc(len(alerts))
            for (rule_id, kind, severity), count in Counter(
                (a.rule_id, a.rule_kind, a.severity.value) for a in alerts
            ).items():
                DETECTIONS.labels(rule_id, kind, severity).inc(count)
            log.debug("published %d alert(s) from %d event(s)", len(alerts), analysed)
        EVENTS_ANALYZED.inc(analysed)
        BATCH_SECONDS.labels("analysis").observe(time.perf_counter() - started)
        observe_detection_latency(deliveries, time.time())

    async def _decode(self, delivery: Delivery) -> list[Event]:
        """The valid events of one message; the invalid ones (or the whole message) dead-lettered."""
        decoded = decode_events(delivery.body, known=delivery.decoded, time_bounds=self.time_bounds)
        if decoded.rejected and not decoded.items and decoded.rejected[0].index is None:
            delivery.dead_letter(decoded.rejected[0].reason)
            return []
        for rejected in decoded.rejected:
            await self.dead_letter([rejected.raw], f"invalid event at index {rejected.index}: {rejected.reason}")
        return decoded.items

    async def _next_chunk(
        self, running: asyncio.Task[list[Alert]] | None, chunk: list[Event], alerts: list[Alert]
    ) -> asyncio.Task[list[Alert]]:
        """Wait for the previous chunk (state calls stay in order), then start this one and let it
        send its state call before returning: the caller decodes the next messages while the
        state backend works, so the two overlap instead of taking turns."""
        if running is not None:
            alerts.extend(await running)
        task = asyncio.create_task(self._detect(chunk))
        await asyncio.sleep(0)
        return task

    async def _detect(self, events: list[Event]) -> list[Alert]:
        found: list[Alert] = []

        async def detect() -> None:
            found[:] = await self.detector.process(events)

        await call_with_recovery(detect, self.state_dependency, self.stopping)
        return found


def observe_detection_latency(deliveries: Sequence[Delivery], now: float) -> None:
    """Ingest to alerts published, per message that carries its ingest time (replayed dead letters
    and messages from older producers do not)."""
    for delivery in deliveries:
        stamp = delivery.headers.get(INGESTED_AT_HEADER)
        if isinstance(stamp, int) and not isinstance(stamp, bool):
            DETECTION_LATENCY.observe(max(now - stamp / 1000, 0.0))
