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
    async with create_state(REDIS_URL, key_prefix=f"{unique_name}:") as window_state:
        yield window_state
    await _drop_keys(f"{unique_name}:")


@pytest.fixture(params=["memory", "redis"])
def any_state(request: pytest.FixtureRequest) -> WindowState:
    fixture = "state" if request.param == "memory" else "redis_state"
    result: WindowState = request.getfixturevalue(fixture)
    return result


@pytest.fixture(params=["memory", "redis"])
async def worker_states(request: pytest.FixtureRequest, unique_name: str) -> AsyncIterator[list[WindowState]]:
    """The window states of two analysis workers: one in-memory state shared in the process, or two
    Redis clients on one key prefix, as two replicas of the analysis service have."""
    if request.param == "memory":
        async with create_state("memory://") as shared:
            yield [shared, shared]
        return
    require_server("redis")
    prefix = f"{unique_name}:"
    async with create_state(REDIS_URL, key_prefix=prefix) as one, create_state(REDIS_URL, key_prefix=prefix) as two:
        yield [one, two]
    await _drop_keys(prefix)


async def _drop_keys(prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()
