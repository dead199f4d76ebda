"""Memory, Redis and Redis Cluster window state give the same hits for the same random batches."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
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


class ClusterStates:
    """One started cluster state per `max_entries` for all the examples of a test (a cluster client
    reads the slots and loads the script when it starts); each example gets a fresh key prefix."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.states: dict[int, RedisClusterWindowState] = {}

    async def get(self, prefix: str, max_entries: int) -> RedisClusterWindowState:
        state = self.states.get(max_entries)
        if state is None:
            state = self.states[max_entries] = RedisClusterWindowState(
                self.url, key_prefix=prefix, max_entries=max_entries
            )
            await state.start()
        state.key_prefix = prefix
        return state


@pytest.fixture
async def clustered(redis_cluster: RedisClusterProcesses) -> AsyncIterator[ClusterStates]:
    states = ClusterStates(redis_cluster.url)
    yield states
    for state in states.states.values():
        await state.aclose()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=op_batches())
async def test_memory_and_redis_agree_on_random_batches(unique_name: str, batches: list[list[WindowOp]]) -> None:
    await agree(unique_name, None, batches)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=op_batches(("sequence",), focus=True))
async def test_memory_and_redis_agree_on_random_sequences(unique_name: str, batches: list[list[WindowOp]]) -> None:
    await agree(unique_name, None, batches)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=op_batches(("sequence",), focus=True, unordered=True))
async def test_memory_and_redis_agree_on_random_unordered_sequences(
    unique_name: str, batches: list[list[WindowOp]]
) -> None:
    await agree(unique_name, None, batches)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=op_batches(adversarial=True, unordered=True))
async def test_memory_and_redis_agree_on_far_timestamps_in_unordered_sequences(
    unique_name: str, batches: list[list[WindowOp]]
) -> None:
    await agree(unique_name, None, batches, max_entries=6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=op_batches(adversarial=True))
async def test_memory_and_redis_agree_on_far_timestamps_and_distinct_counts(
    unique_name: str, batches: list[list[WindowOp]]
) -> None:
    await agree(unique_name, None, batches, max_entries=6)  # small, so that eviction happens too


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=op_batches(adversarial=True, unordered=True))
async def test_memory_redis_and_cluster_agree_on_far_timestamps_and_unordered_sequences(
    unique_name: str, clustered: ClusterStates, batches: list[list[WindowOp]]
) -> None:
    # One test for the Cluster, with the widest strategy: the script is the same as on one server,
    # what the Cluster adds is the split by slot and the merge of the hits, which any batch exercises.
    await agree(unique_name, clustered, batches, max_entries=6)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=op_batches())
async def test_memory_redis_and_cluster_agree_on_random_batches(
    unique_name: str, clustered: ClusterStates, batches: list[list[WindowOp]]
) -> None:
    await agree(unique_name, clustered, batches)


async def agree(
    unique_name: str,
    clustered: ClusterStates | None,
    batches: list[list[WindowOp]],
    max_entries: int = MAX_ENTRIES,
) -> None:
    """Memory and Redis give the same hits for every batch; and the Cluster when `clustered` is given."""
    require_server("redis")
    prefix = f"{unique_name}:{uuid.uuid4().hex[:12]}:"
    memory = MemoryWindowState(max_entries=max_entries)
    single = RedisWindowState(REDIS_URL, key_prefix=prefix, max_entries=max_entries)
    cluster = None if clustered is None else await clustered.get(prefix, max_entries)
    async with single:
        try:
            for batch in batches:
                expected = await memory.apply(batch)
                assert await single.apply(batch) == expected
                if cluster is not None:
                    assert await cluster.apply(batch) == expected
        finally:
            await Backend("redis", prefix).clean()  # the cluster is the session's own
