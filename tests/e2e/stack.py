"""A distributed deployment on the real servers, isolated per test: its own queues, key prefix and
database, services as separate `auditflow serve` processes, and a traffic driver with known answers."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from auditflow.bench.deployment import Deployment, Servers
from auditflow.bench.processes import AuditflowProcess
from tests.conftest import POSTGRES_ADMIN_URL, RABBITMQ_URL, REDIS_URL, require_server

TOKEN = "distributed-test-token-0123456789"


@dataclass
class Stack:
    """A `Deployment` (the bench's) driven from synchronous tests: each service started waits for
    /healthz, and teardown kills whatever is still running before it drops the run's resources."""

    deployment: Deployment
    env: dict[str, str]

    @classmethod
    def create(cls, root: Path, **overrides: str) -> Stack:
        for server in ("postgres", "redis", "rabbitmq"):
            require_server(server)
        deployment = Deployment(
            Servers(RABBITMQ_URL, REDIS_URL, POSTGRES_ADMIN_URL),
            root,
            name=f"t{uuid.uuid4().hex[:10]}",
            token=TOKEN,
            overrides={"AUDITFLOW_DEPENDENCY_RETRY_MAX": "2", **overrides},
            log_level="INFO",
            pass_tuning=False,
        )
        asyncio.run(deployment.create_database())
        return cls(deployment, deployment.env())

    @property
    def name(self) -> str:
        return self.deployment.name

    @property
    def root(self) -> Path:
        return self.deployment.root

    @property
    def processes(self) -> list[AuditflowProcess]:
        return self.deployment.processes

    def migrate(self) -> None:
        process = AuditflowProcess(["migrate"], self.env, 0, log_path=self.root / "migrate.log")
        process.start(wait_healthy=False)
        assert process.proc is not None
        assert process.proc.wait(60) == 0, process.read_output()

    def serve(self, service: str, **env: str) -> AuditflowProcess:
        return self.deployment.process(service, **env).start()

    def destroy(self) -> None:
        for process in self.processes:
            process.kill()
        asyncio.run(self.deployment.destroy())


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
