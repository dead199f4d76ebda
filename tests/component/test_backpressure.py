"""Back-pressure at the HTTP intake of a process with in-process queues: a full events queue answers 503
with Retry-After within a second (never a request that hangs) and readiness shows it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from auditflow.app import create_app
from auditflow.config import load_settings
from auditflow.runtime import Runtime
from tests.factories import make_event

TOKEN = "backpressure-token-0123456789"
QUEUE_BYTES = 16 * 1024 * 1024


@pytest.fixture
async def intake(tmp_path: Path) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    # The generator service ingests but does not analyse: with a memory broker nothing drains the queue.
    settings = load_settings(
        data_dir=tmp_path, api_tokens=TOKEN, generator_rate=0, memory_queue_max_bytes=QUEUE_BYTES, shutdown_grace=1
    )
    runtime = Runtime(settings, "generator")
    app = create_app(runtime, [TOKEN], manage_lifecycle=False)
    await runtime.start()
    await runtime.wait_ready()
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as client:
            yield runtime, client
    finally:
        await runtime.aclose()


def _events(count: int) -> list[object]:
    return [make_event().model_dump(mode="json") for _ in range(count)]


async def test_a_full_queue_answers_503_quickly_and_readiness_shows_it(
    intake: tuple[Runtime, httpx.AsyncClient],
) -> None:
    runtime, client = intake
    ready = (await client.get("/readyz")).json()
    assert next(d for d in ready["dependencies"] if d["name"] == "intake")["status"] == "up"

    assert runtime.broker is not None
    # The backlog: an empty queue takes one message however large, and then it is full.
    await runtime.broker.publish(runtime.settings.events_queue, [b"x" * QUEUE_BYTES])
    depth = await runtime.broker.queue_depth(runtime.settings.events_queue)

    started = time.monotonic()
    async with asyncio.timeout(5):  # the old behaviour: the request waits for room for ever
        response = await client.post("/api/v1/events", json=_events(5))
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert elapsed < 1.0
    assert 1 <= int(response.headers["Retry-After"]) <= 5
    assert "full" in response.json()["detail"]
    assert await runtime.broker.queue_depth(runtime.settings.events_queue) == depth, "nothing half-accepted"

    readiness = await client.get("/readyz")
    intake_status = next(d for d in readiness.json()["dependencies"] if d["name"] == "intake")
    assert intake_status["status"] == "down"
    assert "full" in intake_status["last_error"]
    assert readiness.json()["status"] == "degraded"
    broker = next(d for d in readiness.json()["dependencies"] if d["name"] == "broker")
    assert broker["status"] == "up", "a full queue is not a broker outage"

    # The process's own producers (generator, file ingest, syslog) are not refused: they wait for room.
    assert runtime.ingestor is not None
    own = asyncio.create_task(runtime.ingestor.submit([make_event()], source="generator"))
    await asyncio.sleep(runtime.settings.intake_max_wait_ms / 1000 + 0.3)
    assert not own.done()
    own.cancel()


async def test_submissions_are_accepted_while_there_is_room(intake: tuple[Runtime, httpx.AsyncClient]) -> None:
    _, client = intake
    for _ in range(3):
        assert (await client.post("/api/v1/events", json=_events(50))).status_code == 202
    ready = (await client.get("/readyz")).json()
    assert ready["status"] == "ready"
    assert next(d for d in ready["dependencies"] if d["name"] == "intake")["status"] == "up"
