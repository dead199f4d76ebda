"""Memory, Redis and Redis Cluster window state give the same hits for the same random batches."""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, given, settings

from auditflow.backends.state import WindowOp
from auditflow.backends.state.base import MAX_ENTRIES
from auditflow.backends.state.cluster import RedisClusterWindowState
from auditflow.backends.state.memory import MemoryWindowState
from auditflow.backends.state.redis import RedisWindowState
from tests.clusters.redis_cluster import RedisClusterProcesses
from tests.conftest import REDIS_URL, require_server
from tests.contract.state.ops import Backend
from tests.factories import op_batches


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=op_batches())
async def test_memory_and_redis_agree_on_random_batches(
    unique_name: str, redis_cluster: RedisClusterProcesses, batches: list[list[WindowOp]]
) -> None:
    await agree(unique_name, redis_cluster, batches)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=op_batches(("sequence",), focus=True))
async def test_memory_and_redis_agree_on_random_sequences(
    unique_name: str, redis_cluster: RedisClusterProcesses, batches: list[list[WindowOp]]
) -> None:
    await agree(unique_name, redis_cluster, batches)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=op_batches(("sequence",), focus=True, unordered=True))
async def test_memory_and_redis_agree_on_random_unordered_sequences(
    unique_name: str, redis_cluster: RedisClusterProcesses, batches: list[list[WindowOp]]
) -> None:
    await agree(unique_name, redis_cluster, batches)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=op_batches(adversarial=True, unordered=True))
async def test_memory_and_redis_agree_on_far_timestamps_in_unordered_sequences(
    unique_name: str, redis_cluster: RedisClusterProcesses, batches: list[list[WindowOp]]
) -> None:
    await agree(unique_name, redis_cluster, batches, max_entries=6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=op_batches(adversarial=True))
async def test_memory_and_redis_agree_on_far_timestamps_and_distinct_counts(
    unique_name: str, redis_cluster: RedisClusterProcesses, batches: list[list[WindowOp]]
) -> None:
    await agree(unique_name, redis_cluster, batches, max_entries=6)  # small, so that eviction happens too


async def agree(
    unique_name: str, cluster: RedisClusterProcesses, batches: list[list[WindowOp]], max_entries: int = MAX_ENTRIES
) -> None:
    require_server("redis")
    prefix = f"{unique_name}:{uuid.uuid4().hex[:12]}:"
    memory = MemoryWindowState(max_entries=max_entries)
    single = RedisWindowState(REDIS_URL, key_prefix=prefix, max_entries=max_entries)
    clustered = RedisClusterWindowState(cluster.url, key_prefix=prefix, max_entries=max_entries)
    async with single, clustered:
        try:
            for batch in batches:
                expected = await memory.apply(batch)
                assert await single.apply(batch) == expected
                assert await clustered.apply(batch) == expected
        finally:
            await Backend("redis", prefix).clean()  # the cluster is the session's own
