"""A distributed deployment on the real servers, isolated per test: its own queues, key prefix and
database, services as separate `auditflow serve` processes, and a traffic driver with known answers."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

from tests.conftest import POSTGRES_ADMIN_URL, RABBITMQ_URL, REDIS_URL, require_server
from tests.e2e.processes import AuditflowProcess, auditflow_env, free_port

TOKEN = "distributed-test-token-0123456789"


def create_database(name: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def delete_queues(queues: list[str], exchanges: list[str]) -> None:
    import aio_pika

    async def delete() -> None:
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            for name in queues:
                channel = await connection.channel()
                with contextlib.suppress(Exception):  # already gone
                    await channel.queue_delete(name)
            for name in exchanges:
                channel = await connection.channel()
                with contextlib.suppress(Exception):  # already gone
                    await channel.exchange_delete(name)

    asyncio.run(delete())


def delete_keys(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


@dataclass
class Stack:
    name: str
    root: Path
    env: dict[str, str]
    processes: list[AuditflowProcess] = field(default_factory=list)

    @classmethod
    def create(cls, root: Path, **overrides: str) -> Stack:
        for server in ("postgres", "redis", "rabbitmq"):
            require_server(server)
        name = f"t{uuid.uuid4().hex[:10]}"
        create_database(name)
        env = auditflow_env(
            root,
            {
                "AUDITFLOW_API_TOKENS": TOKEN,
                "AUDITFLOW_BROKER_URL": RABBITMQ_URL,
                "AUDITFLOW_STATE_URL": REDIS_URL,
                "AUDITFLOW_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{name}",
                "AUDITFLOW_EVENTS_QUEUE": f"{name}.events",
                "AUDITFLOW_ALERTS_QUEUE": f"{name}.alerts",
                "AUDITFLOW_DEAD_LETTER_QUEUE": f"{name}.dead",
                "AUDITFLOW_STATE_KEY_PREFIX": f"{name}:",
                "AUDITFLOW_GENERATOR_RATE": "0",
                "AUDITFLOW_DEPENDENCY_RETRY_MAX": "2",
                "AUDITFLOW_LOG_LEVEL": "INFO",
                **overrides,
            },
        )
        return cls(name, root, env)

    def migrate(self) -> None:
        process = AuditflowProcess(["migrate"], self.env, 0)
        process.log_path = self.root / "migrate.log"
        process.start(wait_healthy=False)
        assert process.proc is not None
        assert process.proc.wait(60) == 0, process.read_output()

    def serve(self, service: str, **env: str) -> AuditflowProcess:
        port = free_port()
        process = AuditflowProcess(["serve", service, "--port", str(port)], {**self.env, **env}, port, token=TOKEN)
        process.log_path = self.root / f"{service}-{port}.log"
        self.processes.append(process)
        return process.start()

    def destroy(self) -> None:
        for process in self.processes:
            process.kill()
        drop_database(self.name)
        queues = [f"{self.name}.events", f"{self.name}.alerts", f"{self.name}.dead"]
        delete_queues(queues, [f"{self.name}.dead.dlx"])
        delete_keys(f"{self.name}:")


def burst(user: str, host: str, at: datetime, failures: int = 3) -> list[dict[str, Any]]:
    """`failures` failed logins 100 ms apart: one failed-login-burst alert for (user, host)."""
    return [
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "user_login",
            "action_result": "FAILURE",
            "user_id": user,
            "server_hostname": host,
            "timestamp": (at + timedelta(milliseconds=100 * i)).isoformat(),
        }
        for i in range(failures)
    ]


def noise(n: int, at: datetime) -> list[dict[str, Any]]:
    """Events that no default rule alerts on."""
    return [
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "user_logout",
            "user_id": f"n{i % 50}",
            "timestamp": at.isoformat(),
        }
        for i in range(n)
    ]


class TrafficDriver(threading.Thread):
    """Posts batches at a target rate, retrying each batch until accepted (event ids make retries
    idempotent), so that every generated burst reaches the pipeline even while services restart."""

    def __init__(self, urls: list[str], batches: Iterator[list[dict[str, Any]]], rate: float) -> None:
        super().__init__(daemon=True)
        self.urls = urls
        self.batches = batches
        self.rate = rate
        self.sent_events = 0
        self.retries = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _run(self) -> None:
        started = time.monotonic()
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(headers=headers, timeout=5.0) as client:
            for batch in self.batches:
                attempt = 0
                while True:
                    url = self.urls[attempt % len(self.urls)]
                    try:
                        response = client.post(f"{url}/api/v1/events", json=batch)
                        if response.status_code == 202:
                            break
                        assert response.status_code in {502, 503}, response.text
                    except httpx.TransportError:
                        pass
                    attempt += 1
                    self.retries += 1
                    time.sleep(min(0.05 * attempt, 0.5))
                self.sent_events += len(batch)
                ahead = self.sent_events / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)


def stored_bursts(api_url: str) -> dict[tuple[str, str], int]:
    """(user, host) -> number of failed-login-burst alerts stored."""
    counts: dict[tuple[str, str], int] = {}
    cursor = None
    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10.0) as client:
        while True:
            params: dict[str, Any] = {"rule_id": "failed-login-burst", "limit": 500}
            if cursor:
                params["cursor"] = cursor
            page = client.get(f"{api_url}/api/v1/alerts", params=params).json()
            for item in page["items"]:
                key = (item["user_id"], item["server_hostname"])
                counts[key] = counts.get(key, 0) + 1
            cursor = page["next_cursor"]
            if not cursor:
                return counts


def wait_for_bursts(api_url: str, expected: int, timeout: float = 60.0) -> dict[tuple[str, str], int]:
    """Poll until `expected` groups have alerts and the count stays put for a moment."""
    deadline = time.monotonic() + timeout
    counts: dict[tuple[str, str], int] = {}
    while time.monotonic() < deadline:
        counts = stored_bursts(api_url)
        if len(counts) >= expected:
            time.sleep(1.5)  # let any late duplicate land before judging
            return stored_bursts(api_url)
        time.sleep(0.5)
    return counts


def now() -> datetime:
    return datetime.now(UTC)
