"""OpenTelemetry traces of a batch's path: ingest publish → analysis batch → alerts publish →
notification batch → alert store (outbox rows) → delivery attempt.

The W3C trace context travels in the message headers (`traceparent`, `tracestate`), one context per
message, and in outbox rows under a private payload key that is removed before a channel sends.
A consumed batch joins several messages: its span is the child of the first message's context and
links to the others.

Off by default, and then nothing of OpenTelemetry is imported: each helper costs one check of a
module variable per batch. `configure_tracing` (the `otel_*` settings) or `enable` (tests, with the
SDK's in-memory exporter) turns it on. The correlation id of the log lines (`correlation.py`) is
carried either way; with tracing on it is the trace id.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from auditflow.backends.broker.base import Delivery
from auditflow.correlation import (
    CORRELATION_HEADER,
    correlated,
    current_correlation_id,
    header_value,
    new_correlation_id,
)
from auditflow.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

TRACE_HEADERS = ("traceparent", "tracestate")
# Outbox rows keep the context of the batch that wrote them here, inside their payload.
TRACE_PAYLOAD_KEY = "_trace"
INSTRUMENTATION = "auditflow"


@dataclass(frozen=True, slots=True)
class _Tracing:
    tracer: Tracer
    propagator: TextMapPropagator
    provider: TracerProvider


_active: _Tracing | None = None


def enabled() -> bool:
    return _active is not None


def enable(provider: TracerProvider) -> None:
    """Trace through `provider` from now on (an SDK provider with its span processors)."""
    global _active
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _active = _Tracing(provider.get_tracer(INSTRUMENTATION), TraceContextTextMapPropagator(), provider)


def disable() -> None:
    global _active
    _active = None


def service_name(configured: str | None, service: str) -> str:
    """`otel_service_name`, else the standard OTEL_SERVICE_NAME, else `auditflow-<service>`."""
    if configured:
        return configured
    if from_env := os.environ.get("OTEL_SERVICE_NAME"):
        return from_env
    return "auditflow" if service == "run" else f"auditflow-{service}"


def configure_tracing(enabled: bool, endpoint: str | None, name: str) -> Callable[[], None] | None:
    """Set up export over OTLP/HTTP when `enabled`; returns the shutdown that flushes the spans still
    buffered (call it at exit), or None when tracing stays off."""
    if not enabled:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ConfigError(
            f"AUDITFLOW_OTEL_ENABLED needs the OpenTelemetry packages: pip install 'auditflow[otel]' ({exc})"
        ) from None
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    enable(provider)

    def shutdown() -> None:
        disable()
        provider.shutdown()

    return shutdown


def _trace_id(span: Span) -> str:
    return f"{span.get_span_context().trace_id:032x}"


def _text_headers(headers: Mapping[str, Any]) -> dict[str, str]:
    return {name: value for name in TRACE_HEADERS if (value := header_value(headers, name)) is not None}


def _context_of(tracing: _Tracing, carrier: Mapping[str, Any]) -> Context | None:
    """The remote context a message or outbox row carries, or None."""
    from opentelemetry import trace

    text = _text_headers(carrier)
    if "traceparent" not in text:
        return None
    context = tracing.propagator.extract(text)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


@contextlib.contextmanager
def publishing(name: str, queue: str, headers: dict[str, Any], *, messages: int, items: int) -> Iterator[Span | None]:
    """Around a publish: stamps the correlation id (and, tracing on, the producer span's trace
    context) into `headers`, the headers every message of the publish carries."""
    tracing = _active
    if tracing is None:
        correlation_id = current_correlation_id() or new_correlation_id()
        headers[CORRELATION_HEADER] = correlation_id
        with correlated(correlation_id):
            yield None
        return
    from opentelemetry.trace import SpanKind

    attributes: dict[str, str | int] = {
        "messaging.system": "auditflow",
        "messaging.operation.type": "send",
        "messaging.destination.name": queue,
        "messaging.batch.message_count": messages,
        "auditflow.items": items,
    }
    with tracing.tracer.start_as_current_span(name, kind=SpanKind.PRODUCER, attributes=attributes) as span:
        tracing.propagator.inject(headers)
        correlation_id = current_correlation_id() or _trace_id(span)
        headers[CORRELATION_HEADER] = correlation_id
        with correlated(correlation_id):
            yield span


@contextlib.contextmanager
def consuming(name: str, queue: str, deliveries: Sequence[Delivery]) -> Iterator[Span | None]:
    """Around the handling of one consumed batch: a consumer span, the child of the first message's
    context and linked to the other messages' contexts."""
    tracing = _active
    if tracing is None:
        yield None
        return
    from opentelemetry.trace import Link, SpanKind, get_current_span

    contexts = [context for d in deliveries if (context := _context_of(tracing, d.headers)) is not None]
    parent = contexts[0] if contexts else None
    links = [Link(get_current_span(context).get_span_context()) for context in contexts[1:]]
    attributes: dict[str, str | int] = {
        "messaging.system": "auditflow",
        "messaging.operation.type": "process",
        "messaging.destination.name": queue,
        "messaging.batch.message_count": len(deliveries),
    }
    with tracing.tracer.start_as_current_span(
        name, context=parent, kind=SpanKind.CONSUMER, links=links, attributes=attributes
    ) as span:
        if current_correlation_id() is None:
            with correlated(_trace_id(span)):
                yield span
        else:
            yield span


@contextlib.contextmanager
def span(name: str, **attributes: str | int) -> Iterator[Span | None]:
    """An internal span in the current trace, or nothing when tracing is off."""
    tracing = _active
    if tracing is None:
        yield None
        return
    with tracing.tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current


def context_headers() -> dict[str, str]:
    """Headers that tie a message published now to the current batch: its correlation id and, tracing
    on, the current trace context (for messages outside `publishing`, e.g. dead letters)."""
    headers: dict[str, str] = {}
    tracing = _active
    if tracing is not None:
        tracing.propagator.inject(headers)
    if (correlation_id := current_correlation_id()) is not None:
        headers[CORRELATION_HEADER] = correlation_id
    return headers


def outbox_trace() -> dict[str, str] | None:
    """What an outbox row written now keeps of the current batch: its correlation id and, tracing on,
    its trace context."""
    correlation_id = current_correlation_id()
    tracing = _active
    if tracing is None:
        return {"correlation_id": correlation_id} if correlation_id is not None else None
    carrier: dict[str, str] = {}
    tracing.propagator.inject(carrier)
    if correlation_id is not None:
        carrier["correlation_id"] = correlation_id
    return carrier or None


def split_trace(payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """An outbox payload without the private trace key (what channels send), and that key's value."""
    if TRACE_PAYLOAD_KEY not in payload:
        return payload, None
    trace = payload.get(TRACE_PAYLOAD_KEY)
    clean = {key: value for key, value in payload.items() if key != TRACE_PAYLOAD_KEY}
    return clean, trace if isinstance(trace, dict) else None


@contextlib.contextmanager
def delivering(trace: Mapping[str, Any] | None, channel: str, delivery_id: str, attempt: int) -> Iterator[Span | None]:
    """Around one delivery attempt: the correlation id of the batch that wrote the row, and, tracing
    on, a client span that is the child of the row's stored context."""
    correlation_id = header_value(trace, "correlation_id") if trace else None
    with correlated(correlation_id or current_correlation_id()):
        tracing = _active
        if tracing is None:
            yield None
            return
        from opentelemetry.trace import SpanKind

        parent = _context_of(tracing, trace) if trace else None
        attributes: dict[str, str | int] = {
            "auditflow.channel": channel,
            "auditflow.delivery_id": delivery_id,
            "auditflow.attempt": attempt,
        }
        with tracing.tracer.start_as_current_span(
            f"notify deliver {channel}", context=parent, kind=SpanKind.CLIENT, attributes=attributes
        ) as current:
            yield current


def record_outcome(current: Span | None, status: str, error: str | None) -> None:
    """Mark a delivery span with the attempt's outcome (sent, pending for a retry, dead)."""
    if current is None:
        return
    from opentelemetry.trace import Status, StatusCode

    current.set_attribute("auditflow.delivery.status", status)
    if error is not None:
        current.set_status(Status(StatusCode.ERROR, error[:200]))
