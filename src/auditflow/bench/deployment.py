"""A distributed deployment on real servers, isolated per run (its own queues, key prefix and
database, dropped afterwards), with every service as a separate `auditflow serve` process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from auditflow.errors import AuditFlowError


@dataclass(frozen=True)
class Servers:
    broker_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    state_url: str = "redis://127.0.0.1:6379/0"
    admin_database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"

    def database_url(self, name: str) -> str:
        base, _, _ = self.admin_database_url.rpartition("/")
        return f"{base}/{name}"


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    # Output to a file, not a pipe: an unread pipe fills up and blocks the service.
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, "-m", "auditflow", *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServiceProcess:
    service: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Deployment:
    servers: Servers
    root: Path
    name: str = field(default_factory=lambda: f"bench{secrets.token_hex(5)}")
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    processes: list[ServiceProcess] = field(default_factory=list)
    overrides: dict[str, str] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        return self.servers.database_url(self.name)

    @property
    def events_queue(self) -> str:
        return f"{self.name}.events"

    @property
    def alerts_queue(self) -> str:
        return f"{self.name}.alerts"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.name}.dead"

    @property
    def key_prefix(self) -> str:
        return f"{self.name}:"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITFLOW_")}
        env.update(
            {
                "AUDITFLOW_DATA_DIR": str(self.root),
                "AUDITFLOW_API_TOKENS": self.token,
                "AUDITFLOW_BROKER_URL": self.servers.broker_url,
                "AUDITFLOW_STATE_URL": self.servers.state_url,
                "AUDITFLOW_DATABASE_URL": self.database_url,
                "AUDITFLOW_EVENTS_QUEUE": self.events_queue,
                "AUDITFLOW_ALERTS_QUEUE": self.alerts_queue,
                "AUDITFLOW_DEAD_LETTER_QUEUE": self.dead_letter_queue,
                "AUDITFLOW_STATE_KEY_PREFIX": self.key_prefix,
                "AUDITFLOW_GENERATOR_RATE": "0",
                "AUDITFLOW_LOG_LEVEL": "WARNING",
            }
        )
        # Tuning set for the bench (AUDITFLOW_* in the bench's own environment) reaches the services.
        env.update({k: v for k, v in os.environ.items() if k.startswith("AUDITFLOW_") and k.endswith(_TUNABLE)})
        env.update(self.overrides)
        return env

    async def create_database(self) -> None:
        import psycopg

        async with await psycopg.AsyncConnection.connect(self.servers.admin_database_url, autocommit=True) as conn:
            await conn.execute(f'CREATE DATABASE "{self.name}"')  # a generated identifier, never user input

    async def serve(self, service: str, replicas: int = 1) -> list[ServiceProcess]:
        started = []
        for index in range(replicas):
            port = _free_port()
            log = self.root / f"{service}-{index}.log"
            proc = _spawn(["serve", service, "--port", str(port)], self.env(), log)
            started.append(ServiceProcess(service, port, proc, log))
        self.processes.extend(started)
        await asyncio.gather(*(self._wait_ready(p) for p in started))
        return started

    async def _wait_ready(self, process: ServiceProcess, limit_s: float = 60.0) -> None:
        deadline = time.monotonic() + limit_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if process.proc.poll() is not None:
                    tail = process.log.read_text(errors="replace")[-2000:]
                    raise AuditFlowError(f"{process.service} exited with {process.proc.returncode}: {tail}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{process.url}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise AuditFlowError(f"{process.service} on port {process.port} did not become ready in {limit_s:.0f} s")

    def pids(self, service: str) -> list[int]:
        return [p.proc.pid for p in self.processes if p.service == service]

    def urls(self, service: str) -> list[str]:
        return [p.url for p in self.processes if p.service == service]

    async def stop_processes(self) -> None:
        for process in self.processes:
            if process.proc.poll() is None:
                process.proc.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                await asyncio.to_thread(process.proc.wait, 15)
            except subprocess.TimeoutExpired:
                process.proc.kill()
                await asyncio.to_thread(process.proc.wait)
        self.processes.clear()

    async def destroy(self) -> None:
        """Stop the services and remove every queue, key and the database of this run."""
        await self.stop_processes()
        with contextlib.suppress(Exception):
            await self._delete_queues()
        with contextlib.suppress(Exception):
            await self._delete_keys()
        import psycopg

        async with await psycopg.AsyncConnection.connect(self.servers.admin_database_url, autocommit=True) as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    async def _delete_queues(self) -> None:
        import aio_pika

        connection = await aio_pika.connect(self.servers.broker_url)
        async with connection:
            for queue in (self.events_queue, self.alerts_queue, self.dead_letter_queue, *self.scratch_queues()):
                channel = await connection.channel()
                with contextlib.suppress(Exception):  # never declared in this run
                    await channel.queue_delete(queue)
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.exchange_delete(f"{self.dead_letter_queue}.dlx")

    def scratch_queues(self) -> list[str]:
        """Queues of the baselines."""
        return [f"{self.name}.raw", f"{self.name}.naive", f"{self.name}.memory"]

    async def _delete_keys(self) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.servers.state_url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{self.key_prefix}*", count=1000)]
            for start in range(0, len(keys), 500):
                await client.delete(*keys[start : start + 500])
        finally:
            await client.aclose()


# Settings the bench passes on to the services it starts when they are set in its environment.
_TUNABLE = ("_PREFETCH", "_BATCH_SIZE", "_LINGER_MS", "_FLUSH_MS", "_MAX_DELIVERIES")
