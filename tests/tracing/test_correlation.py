"""Every log line of one batch's path carries one correlation id: the ingest publish, the analysis
batch, the notification batch and the delivery attempt of the embedded runtime, with tracing off
(an id made at ingest, carried in `x-auditflow-correlation-id`) and on (the trace id)."""

from __future__ import annotations

import asyncio
import io
import logging
import re

import orjson
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from auditflow import tracing
from auditflow.backends.broker import Delivery
from auditflow.backends.broker.batching import run_handler
from auditflow.correlation import CORRELATION_HEADER, correlated, current_correlation_id
from tests.tracing.conftest import Embedded

# One line per hop that the path is expected to log at DEBUG: (logger, start of the message).
HOPS = [
    ("auditflow.ingest", "published 1 api event(s)"),
    ("auditflow.analysis", "published 1 alert(s)"),
    ("auditflow.notification", "stored 1 alert(s)"),
    ("auditflow.notify", "delivery "),
]


def _path_lines(stream: io.StringIO) -> list[dict[str, str]]:
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    found = []
    for logger, start in HOPS:
        matching = [line for line in lines if line["logger"] == logger and line["message"].startswith(start)]
        assert len(matching) == 1, (logger, start, [line["message"] for line in lines])
        found.append(matching[0])
    return found


async def test_the_log_lines_of_one_batch_share_its_correlation_id(log_lines: io.StringIO, embedded: Embedded) -> None:
    assert not tracing.enabled()
    await embedded.post_event()
    await embedded.wait_delivered()
    lines = _path_lines(log_lines)
    ids = {line.get("correlation_id") for line in lines}
    assert len(ids) == 1, lines
    [correlation_id] = ids
    assert correlation_id is not None
    assert re.fullmatch(r"[0-9a-f]{32}", correlation_id)
    # The next batch gets its own id.
    await embedded.post_event({"event_type": "file_modified", "details": {"resource": "/etc/shadow"}})
    await embedded.wait_delivered(2)
    delivered = [
        line.get("correlation_id")
        for line in map(orjson.loads, log_lines.getvalue().splitlines())
        if line["logger"] == "auditflow.notify" and line["message"].startswith("delivery ")
    ]
    assert delivered[0] == correlation_id
    assert len(delivered) == 2
    assert delivered[1] not in {None, correlation_id}


async def test_with_tracing_on_the_correlation_id_is_the_trace_id(
    spans: InMemorySpanExporter, log_lines: io.StringIO, embedded: Embedded
) -> None:
    await embedded.post_event()
    await embedded.wait_delivered()
    [trace_id] = {f"{span.context.trace_id:032x}" for span in spans.get_finished_spans()}
    assert {line.get("correlation_id") for line in _path_lines(log_lines)} == {trace_id}


async def test_a_consumed_batch_logs_under_its_first_message_id_and_unbinds_after(log_lines: io.StringIO) -> None:
    seen: list[str | None] = []

    async def handler(batch: object) -> None:
        seen.append(current_correlation_id())
        logging.getLogger("auditflow.test").info("handling")

    batch = [Delivery(b"[]", {}), Delivery(b"[]", {CORRELATION_HEADER: "abc123"}), Delivery(b"[]", {})]
    with correlated(None):
        await run_handler(handler, batch, asyncio.Event())
        assert current_correlation_id() is None
    await run_handler(handler, [Delivery(b"[]", {})], asyncio.Event())  # none carried: a new one
    assert seen[0] == "abc123"
    assert seen[1] is not None
    assert seen[1] != "abc123"
    handled = [orjson.loads(line) for line in log_lines.getvalue().splitlines()]
    assert [line["correlation_id"] for line in handled if line["message"] == "handling"] == seen
