"""The real servers restarted during a stream: RabbitMQ (stop_app/start_app), Redis (shutdown and
start, which also wipes its in-memory state) and PostgreSQL (stop/start). No alert may be lost or
duplicated.

This stops the servers every other test on the machine uses, so it runs only where nothing else
does: in CI (CI=true) or when AUDITFLOW_TEST_RESTART_SERVERS=1 is set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, SERVERS, _reachable
from tests.e2e.stack import Stack, TrafficDriver, burst, noise, now, wait_for_bursts

pytestmark = [pytest.mark.slow, pytest.mark.exclusive, pytest.mark.postgres, pytest.mark.redis, pytest.mark.rabbitmq]

ALLOWED = IN_CI or os.environ.get("AUDITFLOW_TEST_RESTART_SERVERS") == "1"
REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "",
    "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip


def _postgres_version() -> str:
    return sorted(os.listdir("/etc/postgresql"))[0]


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=120)


def _wait(server: str, up: bool, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while _reachable(*SERVERS[server]) != up:
        if time.monotonic() > deadline:
            raise AssertionError(f"{server} did not come {'up' if up else 'down'}")
        time.sleep(0.2)


def _restart_rabbitmq() -> None:
    _run("rabbitmqctl", "stop_app")
    _wait("rabbitmq", up=False)
    time.sleep(1.0)
    _run("rabbitmqctl", "start_app")
    _wait("rabbitmq", up=True)


def _restart_redis() -> None:
    subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], capture_output=True, timeout=30, check=False)
    _wait("redis", up=False)
    time.sleep(1.0)
    _run(*REDIS_START)
    _wait("redis", up=True)


def _restart_postgres() -> None:
    version = _postgres_version()
    _run("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "stop", "-m", "fast")
    _wait("postgres", up=False)
    time.sleep(1.0)
    _run("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start")
    _wait("postgres", up=True)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    if not ALLOWED:
        pytest.skip("restarts the shared servers: runs under CI=true or AUDITFLOW_TEST_RESTART_SERVERS=1")
    for tool in ("rabbitmqctl", "redis-cli", "redis-server", "pg_ctlcluster"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is needed to restart the servers")
    stack = Stack.create(tmp_path)
    yield stack
    for server, start in (("redis", _restart_redis), ("postgres", _restart_postgres)):
        if not _reachable(*SERVERS[server]):
            start()
    stack.destroy()


def _bursts(groups: int) -> Iterator[list[dict[str, Any]]]:
    """Each burst travels in one request, so one message carries it whole (see the module doc)."""
    for i in range(groups):
        at = now()
        yield [*noise(20, at), *burst(f"ruser{i}", f"rhost{i % 11}", at)]


def test_restarting_every_server_during_a_stream_loses_and_duplicates_nothing(stack: Stack) -> None:
    stack.migrate()
    ingest = stack.serve("generator")
    stack.serve("analysis")
    notification = stack.serve("notification")
    groups = 300
    driver = TrafficDriver([ingest.url], _bursts(groups), rate=1_000)
    driver.start()
    for restart in (_restart_rabbitmq, _restart_redis, _restart_postgres):
        time.sleep(2.0)
        restart()
    driver.join(240)
    assert driver.error is None
    assert not driver.is_alive()
    counts = wait_for_bursts(notification.url, groups, timeout=120)
    assert len(counts) == groups, f"{groups - len(counts)} bursts lost"
    assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}
    for process in stack.processes:
        code, _ = process.terminate()
        assert code == 0, process.read_output()
