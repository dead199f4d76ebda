"""Fixtures of the window-state contract suite: every test taking `state` or `backend` runs once per
backend (memory, Redis, Redis Cluster), every test taking `shared_backend` once per Redis backend;
each parameter resolves only its own fixture (Redis skips locally when it is absent, the Cluster
when redis-server is)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from auditflow.backends.state import WindowState
from tests.clusters.redis_cluster import RedisClusterProcesses
from tests.conftest import require_server
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
    await backend.clean()


@pytest.fixture
async def cluster_backend(unique_name: str, redis_cluster: RedisClusterProcesses) -> AsyncIterator[Backend]:
    backend = Backend("cluster", f"{unique_name}:", redis_cluster.url)
    yield backend
    await backend.aclose()  # the cluster is the session's own: its keys go with it


@pytest.fixture(params=["memory", "redis", "cluster"])
def backend(request: pytest.FixtureRequest) -> Backend:
    result: Backend = request.getfixturevalue(f"{request.param}_backend")
    return result


@pytest.fixture(params=["redis", "cluster"])
def shared_backend(request: pytest.FixtureRequest) -> Backend:
    """A backend shared through Redis: a single server or a Cluster."""
    result: Backend = request.getfixturevalue(f"{request.param}_backend")
    return result


@pytest.fixture
async def state(backend: Backend) -> WindowState:
    return await backend.state()
