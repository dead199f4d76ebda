"""The notification service: consumes alert batches and writes them to the store in transactions of
at most `store_batch_size` alerts (idempotent on alert_id); the messages of a batch are acknowledged
only after its last transaction committed."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from auditflow import tracing
from auditflow.backends.broker import Broker, Delivery
from auditflow.backends.store import AlertStore
from auditflow.codec import decode_alerts
from auditflow.dependencies import Dependency
from auditflow.metrics import ALERTS_NEW, ALERTS_STORED, BATCH_SECONDS
from auditflow.model.alert import Alert
from auditflow.retry import call_with_recovery
from auditflow.services.worker import QueueWorker

log = logging.getLogger("auditflow.notification")


class NotificationService(QueueWorker):
    name = "notification"

    def __init__(
        self,
        broker: Broker,
        broker_dependency: Dependency,
        store: AlertStore,
        store_dependency: Dependency,
        *,
        alerts_queue: str,
        dead_letter_queue: str,
        prefetch: int = 200,
        batch_size: int = 100,
        linger_ms: int = 10,
        store_batch_size: int = 1000,
    ) -> None:
        super().__init__(
            broker,
            broker_dependency,
            alerts_queue,
            dead_letter_queue=dead_letter_queue,
            prefetch=prefetch,
            batch_size=batch_size,
            linger_ms=linger_ms,
        )
        self.store = store
        self.store_dependency = store_dependency
        self.store_batch_size = store_batch_size

    async def handle(self, deliveries: Sequence[Delivery]) -> None:
        started = time.perf_counter()
        alerts: list[Alert] = []
        for delivery in deliveries:
            decoded = decode_alerts(delivery.body, known=delivery.decoded)
            if decoded.rejected and not decoded.items and decoded.rejected[0].index is None:
                delivery.dead_letter(decoded.rejected[0].reason)
                continue
            for rejected in decoded.rejected:
                await self.dead_letter([rejected.raw], f"invalid alert at index {rejected.index}: {rejected.reason}")
            alerts.extend(decoded.items)
        if not alerts:
            return

        # One transaction per `store_batch_size` alerts: a retried chunk after a failure is harmless
        # because the upsert is idempotent, and the messages are acknowledged only after the last one.
        # Outbox rows are written in the same transactions, under this span (they keep its context).
        with tracing.span("notification store alerts", **{"auditflow.alerts": len(alerts)}):
            for start in range(0, len(alerts), self.store_batch_size):
                chunk = alerts[start : start + self.store_batch_size]

                async def write(chunk: list[Alert] = chunk) -> None:
                    result = await self.store.upsert_alerts(chunk)
                    ALERTS_STORED.labels("inserted").inc(result.inserted)
                    ALERTS_STORED.labels("updated").inc(result.updated)
                    for severity, count in result.new_by_severity.items():
                        ALERTS_NEW.labels(severity).inc(count)

                await call_with_recovery(write, self.store_dependency, self.stopping)
        log.debug("stored %d alert(s) from %d message(s)", len(alerts), len(deliveries))
        BATCH_SECONDS.labels("notification").observe(time.perf_counter() - started)
