"""Fixtures of the window-state contract suite: every test taking `state` or `backend` runs once per
backend, each parameter resolving only its own fixture (Redis skips locally when it is absent)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from auditflow.backends.state import WindowState
from tests.conftest import REDIS_URL, require_server
from tests.contract.state.ops import Backend


@pytest.fixture
async def memory_backend(unique_name: str) -> AsyncIterator[Backend]:
    backend = Backend("memory", f"{unique_name}:")
    yield backend
    await backend.aclose()


@pytest.fixture
async def redis_backend(unique_name: str) -> AsyncIterator[Backend]:
    require_server("redis")
    backend = Backend("redis", f"{unique_name}:")
    yield backend
    await backend.aclose()
    client = aioredis.Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(match=f"{unique_name}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Backend:
    result: Backend = request.getfixturevalue(f"{request.param}_backend")
    return result


@pytest.fixture
async def state(backend: Backend) -> WindowState:
    return await backend.state()
