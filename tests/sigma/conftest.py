"""Fixtures of the Sigma suite: window state in memory, or over each backend (Redis skips locally
when absent and its keys are removed afterwards)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from auditflow.backends.state import WindowState, create_state
from tests.conftest import REDIS_URL, require_server


@pytest.fixture
async def state() -> AsyncIterator[WindowState]:
    async with create_state("memory://") as window_state:
        yield window_state


@pytest.fixture
async def redis_state(unique_name: str) -> AsyncIterator[WindowState]:
    require_server("redis")
    import redis.asyncio as aioredis

    async with create_state(REDIS_URL, key_prefix=f"{unique_name}:") as window_state:
        yield window_state
    client = aioredis.Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(match=f"{unique_name}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture(params=["memory", "redis"])
def any_state(request: pytest.FixtureRequest) -> WindowState:
    fixture = "state" if request.param == "memory" else "redis_state"
    result: WindowState = request.getfixturevalue(fixture)
    return result
