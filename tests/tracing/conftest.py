"""Fixtures of the tracing tests: the SDK's in-memory exporter behind an enabled tracer, and an
embedded runtime (one process, in-memory broker, SQLite) with a routing file that points at a
local webhook receiver."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from auditflow import tracing
from auditflow.app import create_app
from auditflow.config import load_settings
from auditflow.logconfig import configure_logging
from auditflow.runtime import Runtime
from tests.notify.conftest import SECRET, SECRET_ENV, routing_dict
from tests.notify.receiver import WebhookReceiver

TOKEN = "operator-secret-0123456789"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
EVENT = {"event_type": "file_modified", "details": {"resource": "/etc/passwd"}}  # raises one alert


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, every finished span kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    try:
        yield exporter
    finally:
        tracing.disable()
        provider.shutdown()


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The process's log lines as JSON, at DEBUG, restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("auditflow").level)
    stream = io.StringIO()
    configure_logging("auditflow", "DEBUG", stream, log_format="json")
    try:
        yield stream
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        logging.getLogger("auditflow").setLevel(saved[2])


@dataclass
class Embedded:
    client: httpx.AsyncClient
    receiver: WebhookReceiver
    runtime: Runtime

    async def post_event(self, event: dict[str, Any] | None = None) -> None:
        answer = await self.client.post("/api/v1/events", json=event or EVENT, headers=HEADERS)
        assert answer.status_code == 202, answer.text

    async def wait_delivered(self, count: int = 1) -> None:
        """Until the receiver accepted `count` deliveries and the dispatcher recorded them as sent."""
        async with asyncio.timeout(15):
            while len(self.receiver.accepted_keys()) < count:
                await asyncio.sleep(0.02)
            while True:
                alerts = (await self.client.get("/api/v1/alerts", headers=HEADERS)).json()["items"]
                statuses = [
                    delivery["status"]
                    for alert in alerts
                    for delivery in (
                        await self.client.get(f"/api/v1/alerts/{alert['alert_id']}/deliveries", headers=HEADERS)
                    ).json()
                ]
                if statuses.count("sent") >= count:
                    return
                await asyncio.sleep(0.02)


@pytest.fixture
async def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Embedded]:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    with WebhookReceiver(SECRET) as receiver:
        routing = routing_dict(receiver.url)
        routing["routes"] = routing["routes"][:1]  # one route, one channel: one delivery per alert
        routing_file = tmp_path / "routing.yaml"
        routing_file.write_text(yaml.safe_dump(routing))
        settings = load_settings(data_dir=tmp_path, generator_rate=0, notify_config=routing_file)
        runtime = Runtime(settings, "run")
        app = create_app(runtime, [TOKEN], manage_lifecycle=False)
        await runtime.start()
        await runtime.wait_ready()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                yield Embedded(client, receiver, runtime)
        finally:
            await runtime.aclose()


def by_name(finished: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> dict[str, ReadableSpan]:
    """The spans by name; each name once."""
    names = [span.name for span in finished]
    assert len(names) == len(set(names)), names
    return {span.name: span for span in finished}


class Collector:
    """An OTLP/HTTP traces endpoint on a loopback port that keeps what it receives."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                collector.requests.append((self.path, self.headers["Content-Type"], body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def spans(self) -> list[tuple[str, str, str]]:
        """(service.name, span name, trace id) of everything received so far."""
        found = []
        for _path, _type, body in list(self.requests):
            for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
                attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    service = attributes.get("service.name", "")
                    found += [(service, span.name, span.trace_id.hex()) for span in scope.spans]
        return found

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    collector = Collector()
    try:
        yield collector
    finally:
        collector.close()
        tracing.disable()
