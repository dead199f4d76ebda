"""A distributed deployment on real servers, isolated per run (its own queues, key prefix and
database, dropped afterwards), with every service as a separate `auditflow serve` process. The
bench runs one per scenario; the end-to-end tests run one per test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from auditflow.bench.options import Servers
from auditflow.bench.processes import AuditflowProcess, auditflow_env, free_port

__all__ = ["Deployment", "Servers"]

# Settings the bench passes on to the services it starts when they are set in its environment.
_TUNABLE = ("_PREFETCH", "_BATCH_SIZE", "_LINGER_MS", "_FLUSH_MS", "_MAX_DELIVERIES")


@dataclass
class Deployment:
    servers: Servers
    root: Path
    name: str = field(default_factory=lambda: f"bench{secrets.token_hex(5)}")
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    processes: list[AuditflowProcess] = field(default_factory=list)
    overrides: dict[str, str] = field(default_factory=dict)
    log_level: str = "WARNING"
    pass_tuning: bool = True  # off where the environment must not leak into the services (tests)

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
        # Tuning set for the bench (AUDITFLOW_* in its own environment) reaches the services.
        tuning = {k: v for k, v in os.environ.items() if k.startswith("AUDITFLOW_") and k.endswith(_TUNABLE)}
        if not self.pass_tuning:
            tuning = {}
        return auditflow_env(
            self.root,
            {
                "AUDITFLOW_API_TOKENS": self.token,
                "AUDITFLOW_BROKER_URL": self.servers.broker_url,
                "AUDITFLOW_STATE_URL": self.servers.state_url,
                "AUDITFLOW_DATABASE_URL": self.database_url,
                "AUDITFLOW_EVENTS_QUEUE": self.events_queue,
                "AUDITFLOW_ALERTS_QUEUE": self.alerts_queue,
                "AUDITFLOW_DEAD_LETTER_QUEUE": self.dead_letter_queue,
                "AUDITFLOW_STATE_KEY_PREFIX": self.key_prefix,
                "AUDITFLOW_GENERATOR_RATE": "0",
                "AUDITFLOW_LOG_LEVEL": self.log_level,
                **tuning,
                **self.overrides,
            },
        )

    def process(self, service: str, **env: str) -> AuditflowProcess:
        """A `serve` process for `service` on a free port (not started), tracked for `stop_processes`."""
        port = free_port()
        process = AuditflowProcess(
            ["serve", service, "--port", str(port)],
            {**self.env(), **env},
            port,
            token=self.token,
            log_path=self.root / f"{service}-{port}.log",
            name=service,
        )
        self.processes.append(process)
        return process

    async def serve(self, service: str, replicas: int = 1) -> list[AuditflowProcess]:
        """Start `replicas` processes of `service` and wait until each reports ready."""
        started = [self.process(service).spawn() for _ in range(replicas)]
        await asyncio.gather(*(p.wait_ready() for p in started))
        return started

    def pids(self, service: str) -> list[int]:
        return [p.pid for p in self.processes if p.name == service]

    def urls(self, service: str) -> list[str]:
        return [p.url for p in self.processes if p.name == service]

    async def stop_processes(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.processes))
        self.processes.clear()

    async def create_database(self) -> None:
        import psycopg

        async with await psycopg.AsyncConnection.connect(self.servers.admin_database_url, autocommit=True) as conn:
            await conn.execute(f'CREATE DATABASE "{self.name}"')  # a generated identifier, never user input

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
