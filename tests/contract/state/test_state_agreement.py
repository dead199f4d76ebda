"""Memory and Redis window state give the same hits for the same random batches."""

from __future__ import annotations

import random

import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings

from auditflow.backends.state import WindowOp
from auditflow.backends.state.base import MAX_ENTRIES
from auditflow.backends.state.memory import MemoryWindowState
from auditflow.backends.state.redis import RedisWindowState
from tests.conftest import REDIS_URL, require_server
from tests.factories import op_batches


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=op_batches())
async def test_memory_and_redis_agree_on_random_batches(unique_name: str, batches: list[list[WindowOp]]) -> None:
    await agree(unique_name, batches)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=op_batches(("sequence",), focus=True))
async def test_memory_and_redis_agree_on_random_sequences(unique_name: str, batches: list[list[WindowOp]]) -> None:
    await agree(unique_name, batches)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=op_batches(("sequence",), focus=True, unordered=True))
async def test_memory_and_redis_agree_on_random_unordered_sequences(
    unique_name: str, batches: list[list[WindowOp]]
) -> None:
    await agree(unique_name, batches)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=op_batches(adversarial=True, unordered=True))
async def test_memory_and_redis_agree_on_far_timestamps_in_unordered_sequences(
    unique_name: str, batches: list[list[WindowOp]]
) -> None:
    await agree(unique_name, batches, max_entries=6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=op_batches(adversarial=True))
async def test_memory_and_redis_agree_on_far_timestamps_and_distinct_counts(
    unique_name: str, batches: list[list[WindowOp]]
) -> None:
    await agree(unique_name, batches, max_entries=6)  # small, so that eviction happens too


async def agree(unique_name: str, batches: list[list[WindowOp]], max_entries: int = MAX_ENTRIES) -> None:
    require_server("redis")
    prefix = f"{unique_name}:{random.getrandbits(32):x}:"
    memory = MemoryWindowState(max_entries=max_entries)
    async with RedisWindowState(REDIS_URL, key_prefix=prefix, max_entries=max_entries) as shared:
        try:
            for batch in batches:
                assert await shared.apply(batch) == await memory.apply(batch)
        finally:
            client = aioredis.Redis.from_url(REDIS_URL)
            keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
            if keys:
                await client.delete(*keys)
            await client.aclose()
