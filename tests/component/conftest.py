"""An embedded pipeline (memory broker and state, SQLite) behind the real ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from auditflow.app import create_app
from auditflow.config import load_settings
from auditflow.runtime import Runtime

TOKEN = "component-test-token-0123456789"


@dataclass
class Embedded:
    runtime: Runtime
    client: httpx.AsyncClient

    async def post_events(self, events: Any) -> httpx.Response:
        return await self.client.post("/api/v1/events", json=events)

    async def alerts(self, **params: Any) -> list[dict[str, Any]]:
        await self.runtime.settle()
        response = await self.client.get("/api/v1/alerts", params=params)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[Embedded]:
    settings = load_settings(data_dir=tmp_path, generator_rate=0, api_tokens=TOKEN)
    runtime = Runtime(settings, "run")
    app = create_app(runtime, [TOKEN], manage_lifecycle=False)
    await runtime.start()
    await runtime.wait_ready()
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as client:
        yield Embedded(runtime, client)
    await runtime.aclose()
