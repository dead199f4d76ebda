"""The analysis service: consumes event batches, applies the rules through the window state, and
publishes alerts. A batch is acknowledged only after its alerts are confirmed by the broker."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from auditflow.backends.broker import Broker, Delivery
from auditflow.backends.state import WindowState
from auditflow.codec import decode_events, encode_alerts
from auditflow.dependencies import Dependency, call_with_recovery
from auditflow.metrics import ALERTS_PUBLISHED, BATCH_SECONDS, EVENTS_ANALYZED
from auditflow.model.alert import Alert
from auditflow.model.event import Event
from auditflow.rules import Detector, RuleSet
from auditflow.services.worker import QueueWorker

log = logging.getLogger("auditflow.analysis")


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
        self.state_dependency = state_dependency
        self.detector = Detector(state, rules)
        self.publish_batch_size = publish_batch_size
        self._local = broker.url.startswith("memory")  # see codec.Handoff

    async def handle(self, deliveries: Sequence[Delivery]) -> None:
        started = time.perf_counter()
        events: list[Event] = []
        for delivery in deliveries:
            decoded = decode_events(delivery.body)
            if decoded.rejected and not decoded.items and decoded.rejected[0].index is None:
                delivery.dead_letter(decoded.rejected[0].reason)
                continue
            if decoded.rejected:
                for rejected in decoded.rejected:
                    await self.dead_letter(
                        [rejected.raw], f"invalid event at index {rejected.index}: {rejected.reason}"
                    )
            events.extend(decoded.items)
        if not events:
            return
        alerts: list[Alert] = []

        async def detect() -> None:
            alerts[:] = await self.detector.process(events)

        await call_with_recovery(detect, self.state_dependency, self.stopping)
        if alerts:
            bodies = [
                encode_alerts(alerts[i : i + self.publish_batch_size], local=self._local)
                for i in range(0, len(alerts), self.publish_batch_size)
            ]

            async def publish() -> None:
                await self.broker.publish(self.alerts_queue, bodies)

            await call_with_recovery(publish, self.broker_dependency, self.stopping)
            ALERTS_PUBLISHED.labels("alert").inc(len(alerts))
            log.debug("published %d alert(s) from %d event(s)", len(alerts), len(events))
        EVENTS_ANALYZED.inc(len(events))
        BATCH_SECONDS.labels("analysis").observe(time.perf_counter() - started)
