"""The distributed target: `auditflow serve` processes for generator (ingest API), analysis (one or
more replicas) and notification on RabbitMQ, Redis and PostgreSQL. Separate processes, as deployed,
so that RSS and CPU are per service and replicas really compete; the bench process only sends
requests and reads the store."""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from auditflow.backends.broker.rabbitmq import RabbitMQBroker
from auditflow.backends.store import AlertStore, create_store
from auditflow.bench.deployment import Deployment, Servers
from auditflow.errors import AuditFlowError

_ANALYZED = re.compile(rb"^auditflow_events_analyzed_total (\S+)$", re.MULTILINE)
# Empty queues and an analysed count that has not moved for this long: the events still missing will
# never be counted (dead-lettered, or refused by the ingest API's checks), so the run is over.
STALL_S = 30.0

log = logging.getLogger("auditflow.bench")


class DistributedTarget:
    def __init__(
        self, deployment: Deployment, broker: RabbitMQBroker, store: AlertStore, ingest: str, client: httpx.AsyncClient
    ) -> None:
        self.deployment = deployment
        self.broker = broker
        self.store = store
        self.ingest = ingest
        self.client = client
        self.total_events = 0
        self._analyzed = (-1, 0.0)  # the last count read, and when it last changed
        self.processes = {
            service: deployment.pids(service)
            for service in ("generator", "analysis", "notification")
            if deployment.pids(service)
        }
        self._ingest_urls = itertools.cycle(deployment.urls("generator") or [""])

    def expect(self, events: int) -> None:
        self.total_events = events

    async def submit(self, body: bytes) -> None:
        if self.ingest == "broker":
            await self.broker.publish(self.deployment.events_queue, [body])
            return
        response = await self.client.post(
            f"{next(self._ingest_urls)}/api/v1/events", content=body, headers={"Content-Type": "application/json"}
        )
        if response.status_code != 202:
            raise AuditFlowError(f"ingest answered {response.status_code}: {response.text[:300]}")

    async def depths(self) -> dict[str, int]:
        return {
            "events": await self.broker.queue_depth(self.deployment.events_queue),
            "alerts": await self.broker.queue_depth(self.deployment.alerts_queue),
        }

    async def analyzed(self) -> int:
        """Events the analysis replicas have evaluated, from their /metrics."""
        total = 0.0
        for url in self.deployment.urls("analysis"):
            text = (await self.client.get(f"{url}/metrics")).content
            match = _ANALYZED.search(text)
            total += float(match.group(1)) if match else 0.0
        return int(total)

    async def idle(self) -> bool:
        # Ready counts leave out what consumers hold unacknowledged; the analysis counters do not.
        if self.total_events:
            analyzed, now = await self.analyzed(), time.monotonic()
            if analyzed != self._analyzed[0]:
                self._analyzed = (analyzed, now)
            if analyzed < self.total_events:
                if now - self._analyzed[1] < STALL_S or any((await self.depths()).values()):
                    return False
                log.warning(
                    "%d of %d events were never analysed and the queues are empty: see the dead letters",
                    self.total_events - analyzed,
                    self.total_events,
                )
                return True
        return not any((await self.depths()).values())


@contextlib.asynccontextmanager
async def distributed_target(
    servers: Servers,
    root: Path,
    *,
    analysis_replicas: int = 1,
    generator_replicas: int = 1,
    ingest: str = "api",
    keep: bool = False,
) -> AsyncIterator[DistributedTarget]:
    deployment = Deployment(servers, root)
    await deployment.create_database()
    store = create_store(deployment.database_url)
    broker = RabbitMQBroker(servers.broker_url, dead_letter_queue=deployment.dead_letter_queue)
    try:
        await store.start()
        await store.migrate()
        await broker.start()
        await broker.declare(deployment.events_queue)
        await broker.declare(deployment.alerts_queue)
        await deployment.serve("notification")
        await deployment.serve("analysis", analysis_replicas)
        if ingest == "api":
            await deployment.serve("generator", generator_replicas)
        headers = {"Authorization": f"Bearer {deployment.token}"}
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(headers=headers, timeout=60.0, limits=limits) as client:
            yield DistributedTarget(deployment, broker, store, ingest, client)
    finally:
        await deployment.stop_processes()
        await broker.aclose()
        await store.aclose()
        if not keep:
            await deployment.destroy()
