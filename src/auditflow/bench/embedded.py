"""The embedded target: one in-process `Runtime` with every service, the memory broker and window
state and a SQLite store in a scratch directory; bodies are validated and submitted exactly as the
ingest API does after reading a request (the HTTP layer itself is left out)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from auditflow.api.events import validate_event_body
from auditflow.backends.store import AlertStore
from auditflow.config import Settings, load_settings
from auditflow.model.event import Event
from auditflow.model.limits import TIME_BOUNDS_CONTEXT
from auditflow.runtime import Runtime

_EVENTS = TypeAdapter(list[Event])


class EmbeddedTarget:
    def __init__(self, runtime: Runtime) -> None:
        assert runtime.store is not None
        assert runtime.ingestor is not None
        assert runtime.broker is not None
        self.runtime = runtime
        self.store: AlertStore = runtime.store
        self.processes = {"auditflow (all services)": [os.getpid()]}
        self._queues = [runtime.settings.events_queue, runtime.settings.alerts_queue]
        self._linger = max(runtime.settings.consume_linger_ms, runtime.settings.store_flush_ms) / 1000

    def expect(self, events: int) -> None:
        return None  # queues and in-flight counters tell when the work is done

    async def submit(self, body: bytes) -> None:
        ingestor = self.runtime.ingestor
        assert ingestor is not None
        # The ingest endpoint's own validation, with its event-time bounds.
        events = validate_event_body(body, {TIME_BOUNDS_CONTEXT: ingestor.time_bounds})
        if events is None:
            events = _EVENTS.validate_json(body)  # raises, naming the problem
        await ingestor.submit(events, source="bench")

    async def depths(self) -> dict[str, int]:
        assert self.runtime.broker is not None
        return {queue: await self.runtime.broker.queue_depth(queue) for queue in self._queues}

    def _busy_now(self, depths: dict[str, int]) -> bool:
        workers = [w for w in (self.runtime.analysis, self.runtime.notification) if w is not None]
        return any(depths.values()) or any(w.in_flight for w in workers)

    async def idle(self) -> bool:
        # Twice, a linger apart: a batch being collected is neither queued nor in flight for a moment.
        if self._busy_now(await self.depths()):
            return False
        await asyncio.sleep(self._linger)
        return not self._busy_now(await self.depths())


def embedded_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Embedded settings (environment variables still tune batch sizes and lingers)."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "broker_url": "memory://",
        "state_url": "memory://",
        "database_url": f"sqlite:///{data_dir / 'bench.sqlite3'}",
        "generator_rate": 0,
    }
    return load_settings(**{**values, **overrides})


@contextlib.asynccontextmanager
async def embedded_target(data_dir: Path | None = None) -> AsyncIterator[EmbeddedTarget]:
    with contextlib.ExitStack() as stack:
        root = data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="auditflow-bench-")))
        runtime = Runtime(embedded_settings(root), "run")
        await runtime.start()
        try:
            async with asyncio.timeout(30):
                await runtime.wait_ready()
            yield EmbeddedTarget(runtime)
        finally:
            await runtime.aclose()
