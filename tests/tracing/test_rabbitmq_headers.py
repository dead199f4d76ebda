"""The trace context and the correlation id cross the real RabbitMQ broker in AMQP headers: the
consumer's batch span is the child of the ingest publish span, and its log lines carry the id."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from auditflow.backends.broker import Delivery
from auditflow.correlation import CORRELATION_HEADER, current_correlation_id
from auditflow.dependencies import Dependency
from auditflow.services.ingest import Ingestor
from auditflow.services.worker import QueueWorker
from tests.conftest import RABBITMQ_URL, WAIT, delete_rabbitmq_topology, require_server
from tests.factories import make_event
from tests.tracing.conftest import by_name

pytestmark = pytest.mark.rabbitmq


class Recorder(QueueWorker):
    name = "recorder"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.seen: list[tuple[dict[str, object], int, str | None]] = []
        self.done = asyncio.Event()

    async def handle(self, deliveries: Sequence[Delivery]) -> None:
        span_id = trace.get_current_span().get_span_context().span_id
        for delivery in deliveries:
            self.seen.append((dict(delivery.headers), span_id, current_correlation_id()))
        self.done.set()


@pytest.fixture
async def broker_dependency(unique_name: str) -> AsyncIterator[tuple[object, Dependency]]:
    require_server("rabbitmq")
    from auditflow.backends.broker.rabbitmq import RabbitMQBroker

    broker = RabbitMQBroker(RABBITMQ_URL, dead_letter_queue=f"{unique_name}_dlq")
    dependency = Dependency("broker", start=broker.start, ping=broker.ping, critical=True, impact="none")
    dependency.run()
    await asyncio.wait_for(dependency.wait_up(), WAIT)
    try:
        yield broker, dependency
    finally:
        await dependency.aclose()
        await broker.aclose()
        queues = {f"{unique_name}_events", broker.dead_letter_queue}
        await delete_rabbitmq_topology(queues, {broker.dead_letter_exchange})


async def test_trace_context_crosses_rabbitmq_headers(
    spans: InMemorySpanExporter, broker_dependency: tuple[object, Dependency], unique_name: str
) -> None:
    broker, dependency = broker_dependency
    queue = f"{unique_name}_events"
    ingestor = Ingestor(broker, dependency, queue)  # type: ignore[arg-type]
    worker = Recorder(
        broker, dependency, queue, dead_letter_queue=f"{unique_name}_dlq", prefetch=10, batch_size=10, linger_ms=0
    )
    await worker.start()
    try:
        await ingestor.submit([make_event()], source="api")
        await asyncio.wait_for(worker.done.wait(), WAIT)
    finally:
        await worker.stop()

    named = by_name(spans.get_finished_spans())
    produced, consumed = named["ingest publish"], named["recorder batch"]
    assert (produced.kind, consumed.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
    assert consumed.context.trace_id == produced.context.trace_id
    assert consumed.parent is not None
    assert consumed.parent.is_remote
    assert consumed.parent.span_id == produced.context.span_id
    [(headers, handled_in, correlation_id)] = worker.seen
    assert handled_in == consumed.context.span_id  # the handler ran inside the batch span
    trace_id = f"{produced.context.trace_id:032x}"
    assert headers[CORRELATION_HEADER] == trace_id
    assert str(headers["traceparent"]).startswith(f"00-{trace_id}-")
    assert correlation_id == trace_id
