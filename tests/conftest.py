"""Shared fixtures: real-server access that skips locally but fails under CI=true, and unique names
so that parallel runs on the shared servers never collide."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.clusters.redis_cluster import RedisClusterProcesses

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

SERVERS = {
    "postgres": ("127.0.0.1", 5432),
    "redis": ("127.0.0.1", 6379),
    "rabbitmq": ("127.0.0.1", 5672),
}

POSTGRES_ADMIN_URL = os.environ.get("AUDITFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("AUDITFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RABBITMQ_URL = os.environ.get("AUDITFLOW_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
WAIT = 20.0  # seconds before a missing message fails the test instead of hanging it


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def unavailable(message: str) -> None:
    """Skip the test, except in CI where a skipped real-server test would hide a broken set-up:
    there it fails."""
    if IN_CI:
        pytest.fail(f"{message} (CI=true: real-server tests must run)")
    pytest.skip(message)


def require_server(name: str) -> None:
    """Skip the test when the server is down (fail under CI=true)."""
    host, port = SERVERS[name]
    if not _reachable(host, port):
        unavailable(f"{name} is not reachable on {host}:{port}")


async def delete_rabbitmq_topology(queues: set[str], exchanges: set[str]) -> None:
    """Remove what a RabbitMQ test declared; imported late so that the other suites run without aio-pika."""
    import aio_pika

    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        for queue in queues:
            # Quorum queues refuse if_unused/if_empty, and the refusal closes the connection.
            await channel.queue_delete(queue, if_unused=False, if_empty=False)
        for exchange in exchanges:
            await channel.exchange_delete(exchange, if_unused=False)


@pytest.fixture
def unique_name() -> str:
    """A short name unique to this test, for queues, key prefixes and databases."""
    return f"t{uuid.uuid4().hex[:12]}"


# Under pytest-xdist (scripts/test runs `-n auto --dist loadgroup`), a group's tests all run in one worker.
_WORKER_GROUPS = ("container", "browser")


def _run_order(item: pytest.Item) -> int:
    """Container tests first: they wait on image builds and containers more than they use the CPU, so they
    overlap the rest. Browser tests last: Playwright's sync API keeps an event loop running in the main
    thread while its session-scoped browser is open, which would break every asyncio test run after it
    in the same process."""
    if item.get_closest_marker("container") is not None:
        return 0
    if item.get_closest_marker("browser") is not None:
        return 2
    return 1


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The run order above, and one xdist group each for the container tests (one image build, one
    Docker engine's worth of containers at a time) and the browser tests (one Chromium)."""
    items.sort(key=_run_order)
    for item in items:
        for group in _WORKER_GROUPS:
            if item.get_closest_marker(group) is not None:
                item.add_marker(pytest.mark.xdist_group(group))


def require_redis_cluster_tools() -> None:
    """Skip when redis-server or redis-cli is missing (a local Redis Cluster cannot start); fail
    under CI=true."""
    from tests.clusters.redis_cluster import cluster_tools_present

    if not cluster_tools_present():
        unavailable("redis-server and redis-cli are needed for a local Redis Cluster")


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterProcesses]:
    """One local Redis Cluster (3 masters, 3 replicas) for the whole session, stopped at its end.
    Tests share it through unique key prefixes (its keys go with it, so they need no cleaning); a
    test that kills nodes starts its own."""
    from tests.clusters.redis_cluster import RedisClusterProcesses, shared_command_table

    require_redis_cluster_tools()
    with RedisClusterProcesses(masters=3, node_timeout_ms=2000) as cluster, shared_command_table():
        yield cluster
