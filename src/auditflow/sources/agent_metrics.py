"""The agent's own observability: Prometheus metrics in a registry of its own, and a small HTTP
listener answering `/healthz` (JSON status) and `/metrics` on a port of its own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

MAX_REQUEST_BYTES = 8 * 1024
REQUEST_TIMEOUT = 5.0


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.lines = Counter("auditflow_agent_lines_read", "Lines read, by followed path.", ["path"], registry=r)
        self.events = Counter("auditflow_agent_events", "Events made from the lines, by path.", ["path"], registry=r)
        self.unparsed = Counter(
            "auditflow_agent_lines_unparsed",
            "Lines no parser understood, by path and reason.",
            ["path", "reason"],
            registry=r,
        )
        self.sent = Counter("auditflow_agent_events_sent", "Events the API accepted.", registry=r)
        self.batches = Counter("auditflow_agent_batches_sent", "Batches the API accepted.", registry=r)
        self.failures = Counter(
            "auditflow_agent_send_failures", "Failed batch requests, by reason.", ["reason"], registry=r
        )
        self.buffered = Gauge("auditflow_agent_buffered_lines", "Lines read and not yet accepted.", registry=r)
        self.api_up = Gauge("auditflow_agent_api_up", "1 when the last batch request succeeded.", registry=r)
        self.offset = Gauge(
            "auditflow_agent_checkpoint_offset_bytes",
            "Checkpointed offset in the current file, by path.",
            ["path"],
            registry=r,
        )
        self.last_accepted = Gauge(
            "auditflow_agent_last_accepted_timestamp_seconds", "When the API last accepted a batch.", registry=r
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class StatusServer:
    """`GET /healthz` and `GET /metrics` over plain HTTP/1.1, one request per connection."""

    def __init__(self, host: str, port: int, health: Callable[[], dict[str, Any]], metrics: AgentMetrics) -> None:
        self.host = host
        self.port = port
        self._health = health
        self._metrics = metrics
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, limit=MAX_REQUEST_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                request = await reader.readuntil(b"\r\n\r\n")
            method, target = _request_line(request)
            status, content_type, body = self._answer(method, target)
            head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _answer(self, method: str, target: str) -> tuple[str, str, bytes]:
        path = target.split("?", 1)[0]
        if method not in {"GET", "HEAD"}:
            return "405 Method Not Allowed", "text/plain", b"only GET\n"
        if path == "/healthz":
            return "200 OK", "application/json", orjson.dumps(self._health())
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, self._metrics.exposition()
        return "404 Not Found", "text/plain", b"try /healthz or /metrics\n"


def _request_line(request: bytes) -> tuple[str, str]:
    parts = request.split(b"\r\n", 1)[0].decode("latin-1").split()
    if len(parts) != 3:
        raise ValueError("malformed request line")
    return parts[0], parts[1]
