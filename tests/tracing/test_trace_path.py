"""One event posted to the embedded runtime is followed across every hop in one trace: ingest publish
→ analysis batch → alerts publish → notification batch → alert store → delivery attempt, each span
the child of the one before; the trace context travels in message headers and in the outbox row,
whose private key never reaches the receiver. Tracing off: no span and no trace header."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from auditflow import tracing
from auditflow.backends.broker import Delivery
from auditflow.backends.broker.memory import MemoryBroker
from auditflow.correlation import CORRELATION_HEADER
from auditflow.dependencies import Dependency
from auditflow.services.ingest import Ingestor
from auditflow.services.worker import QueueWorker
from tests.factories import make_event
from tests.tracing.conftest import Embedded, by_name

PATH = [
    ("ingest publish", SpanKind.PRODUCER),
    ("analysis batch", SpanKind.CONSUMER),
    ("analysis publish alerts", SpanKind.PRODUCER),
    ("notification batch", SpanKind.CONSUMER),
    ("notification store alerts", SpanKind.INTERNAL),
    ("notify deliver soc", SpanKind.CLIENT),
]


def _parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_one_event_is_one_trace_from_ingest_to_delivery(spans: InMemorySpanExporter, embedded: Embedded) -> None:
    await embedded.post_event()
    await embedded.wait_delivered()

    named = by_name(spans.get_finished_spans())
    assert set(named) == {name for name, _ in PATH}
    path = [named[name] for name, _ in PATH]
    assert [span.kind for span in path] == [kind for _, kind in PATH]
    [trace_id] = {span.context.trace_id for span in path}
    assert path[0].parent is None  # the request starts the trace
    for parent, child in itertools.pairwise(path):
        assert _parent_id(child) == parent.context.span_id, (child.name, parent.name)
    assert path[1].parent is not None
    assert path[1].parent.is_remote
    assert path[5].parent is not None
    assert path[5].parent.is_remote
    assert path[0].attributes is not None
    assert path[0].attributes["messaging.destination.name"] == "audit_events"
    assert path[5].attributes is not None
    assert path[5].attributes["auditflow.delivery.status"] == "sent"

    [request] = embedded.receiver.seen()
    assert tracing.TRACE_PAYLOAD_KEY not in request.body  # the private key is stripped before sending
    assert request.body["event"] == "new"
    assert trace_id != 0


async def test_a_batch_of_several_messages_is_the_child_of_the_first_and_links_the_others(
    spans: InMemorySpanExporter,
) -> None:
    first, second = {}, {}  # type: ignore[var-annotated]
    with tracing.publishing("one", "q", first, messages=1, items=1):
        pass
    with tracing.publishing("two", "q", second, messages=1, items=1):
        pass
    untraced = Delivery(b"[]", {CORRELATION_HEADER: "c0ffee"})
    with tracing.consuming("batch", "q", [Delivery(b"[]", first), untraced, Delivery(b"[]", second)]):
        pass
    named = by_name(spans.get_finished_spans())
    batch = named["batch"]
    assert batch.context.trace_id == named["one"].context.trace_id
    assert _parent_id(batch) == named["one"].context.span_id
    assert [link.context.span_id for link in batch.links] == [named["two"].context.span_id]
    assert batch.attributes is not None
    assert batch.attributes["messaging.batch.message_count"] == 3


async def test_garbage_trace_headers_start_a_new_trace(spans: InMemorySpanExporter) -> None:
    with tracing.consuming("batch", "q", [Delivery(b"[]", {"traceparent": "00-not-a-trace"})]):
        pass
    [batch] = spans.get_finished_spans()
    assert batch.parent is None
    assert batch.links == ()


async def _published_headers(count: int) -> list[dict[str, Any]]:
    broker = MemoryBroker("memory://")
    await broker.start()
    dependency = Dependency("broker", start=broker.ping, ping=broker.ping, critical=True, impact="none")
    dependency.run()
    await dependency.wait_up()
    try:
        ingestor = Ingestor(broker, dependency, "events")
        for _ in range(count):
            await ingestor.submit([make_event()], source="api")
        seen: list[dict[str, Any]] = []

        async def handler(batch: Any) -> None:
            seen.extend(dict(d.headers) for d in batch)
            if len(seen) == count:
                await broker.stop_consuming("events")

        await broker.consume("events", handler, linger_ms=0)
        return seen
    finally:
        await dependency.aclose()
        await broker.aclose()


async def test_tracing_off_makes_no_span_and_adds_no_trace_header() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()  # installed nowhere: tracing stays off
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert not tracing.enabled()
    headers = await _published_headers(2)
    assert [sorted(h) for h in headers] == [sorted([CORRELATION_HEADER, "x-auditflow-ingested-at"])] * 2
    assert headers[0][CORRELATION_HEADER] != headers[1][CORRELATION_HEADER]  # one id per ingest batch
    assert exporter.get_finished_spans() == ()


async def test_tracing_on_stamps_traceparent_and_the_trace_id_as_correlation_id(spans: InMemorySpanExporter) -> None:
    [headers] = await _published_headers(1)
    [span] = spans.get_finished_spans()
    trace_id = f"{span.context.trace_id:032x}"
    version, traced, parent, flags = headers["traceparent"].split("-")
    assert (version, traced, parent) == ("00", trace_id, f"{span.context.span_id:016x}")
    assert int(flags, 16) & 1  # sampled
    assert headers[CORRELATION_HEADER] == trace_id


class _RejectsEverything(QueueWorker):
    """Dead-letters each item of its batch, as analysis does with an invalid event."""

    name = "rejecter"

    async def handle(self, deliveries: Sequence[Delivery]) -> None:
        await self.dead_letter([{"bad": True}], "invalid event at index 0: no")


async def test_an_item_dead_letter_keeps_the_batch_correlation_id_and_trace(spans: InMemorySpanExporter) -> None:
    broker = MemoryBroker("memory://", dead_letter_queue="dead")
    await broker.start()
    dependency = Dependency("broker", start=broker.ping, ping=broker.ping, critical=True, impact="none")
    dependency.run()
    await dependency.wait_up()
    worker = _RejectsEverything(
        broker, dependency, "events", dead_letter_queue="dead", prefetch=10, batch_size=10, linger_ms=0
    )
    letters: list[dict[str, Any]] = []
    try:
        await Ingestor(broker, dependency, "events").submit([make_event()], source="api")
        await worker.start()

        async def collect(batch: Sequence[Delivery]) -> None:
            letters.extend(dict(d.headers) for d in batch)
            await broker.stop_consuming("dead")

        await asyncio.wait_for(broker.consume("dead", collect, linger_ms=0), 10)
    finally:
        await worker.stop()
        await dependency.aclose()
        await broker.aclose()
    named = by_name(spans.get_finished_spans())
    batch = named["rejecter batch"]
    [letter] = letters
    trace_id = f"{batch.context.trace_id:032x}"
    assert letter[CORRELATION_HEADER] == trace_id
    assert letter["traceparent"] == f"00-{trace_id}-{batch.context.span_id:016x}-{letter['traceparent'][-2:]}"
    assert letter["x-auditflow-reason"].startswith("invalid event at index 0")
