"""The notify scenario: alerts written at a set rate through the store's upsert (whose outbox hook
writes one row per channel in the alert's transaction), the dispatcher sending them to a local
webhook receiver, and what arrived compared with what was written.

Embedded: the dispatcher runs in this process beside the writes, on SQLite, as in `auditflow run`.
Distributed: `auditflow serve dispatcher` processes on a PostgreSQL database of the run's own.
The receiver is a child process either way (`auditflow.bench.receiver`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
import sqlalchemy as sa
import yaml

from auditflow.backends.store.schema import notification_deliveries as deliveries
from auditflow.backends.store.sql import SqlAlertStore
from auditflow.bench.measure import Sampler, find_pids, percentiles
from auditflow.bench.options import BenchOptions
from auditflow.bench.receiver import ReceiverProcess
from auditflow.bench.results import DeliveryCorrectness, Latency, NotifyResult, OutboxDepth
from auditflow.bench.scenarios import seed_alerts
from auditflow.notify import outbox
from auditflow.notify.http import skip_failing_sniffio_import
from auditflow.notify.outbox import OutboxWriter
from auditflow.notify.routing import Routing

Progress = Callable[[str, int, int], None]

DEFAULT_DURATION_S = 10.0
_TICK_S = 0.02  # alerts are written in small transactions this often, as a busy notification service does


@dataclass(frozen=True)
class Written:
    alerts: int
    started: float  # time.time() of the first write
    seconds: float


def bench_routing(
    receiver: ReceiverProcess, channels: int, secret_file: Path, batch_size: int = 0, concurrency: int = 0
) -> dict[str, Any]:
    """Every alert to `channels` webhook channels (one delivery each), the shipped delivery defaults
    unless a batch size or concurrency is given."""
    names = [f"hook-{n}" for n in range(1, channels + 1)]
    delivery = {key: value for key, value in (("batch_size", batch_size), ("concurrency", concurrency)) if value}
    return {
        "delivery": delivery,
        "channels": {
            name: {"type": "webhook", "url": receiver.url(f"/{name}"), "secret_file": str(secret_file)}
            for name in names
        },
        "routes": [{"name": "bench", "channels": names, "events": ["new"]}],
    }


def write_routing(root: Path, receiver: ReceiverProcess, options: BenchOptions) -> tuple[Path, Routing]:
    """The run's routing file and signing secret in its scratch directory."""
    root.mkdir(parents=True, exist_ok=True)
    secret_file = root / "webhook-secret"
    secret_file.write_text(secrets.token_urlsafe(32))
    secret_file.chmod(0o600)
    raw = bench_routing(
        receiver, options.notify_channels, secret_file, options.notify_batch_size, options.notify_concurrency
    )
    routing_file = root / "routing.yaml"
    routing_file.write_text(yaml.safe_dump(raw))
    return routing_file, Routing.model_validate(raw)


async def run_notify(options: BenchOptions, root: Path, progress: Progress) -> NotifyResult:
    receiver = ReceiverProcess().start()
    try:
        routing_file, routing = write_routing(root, receiver, options)
        async with _dispatching(options, root, routing, routing_file) as (store, where, pids):
            processes = {"bench": [os.getpid()], "receiver": [receiver.proc.pid if receiver.proc else 0], **pids}
            if options.mode == "distributed":
                processes["postgres"] = find_pids("postgres")
            result = await _measure(options, store, routing, receiver, processes, where, progress)
            count = max(1, min(result.correctness.expected, 5000))
            body = await _sample_body(store)
            concurrency = routing.delivery.concurrency
            progress("notify: baseline (aiohttp loop)", 0, 1)
            result.baseline_requests = count
            result.baseline_requests_per_s, result.baseline_requests_per_cpu_second = await _timed(
                aiohttp_loop(receiver.url("/baseline"), count, body, concurrency), count
            )
            # The client the senders used before, for reference: fewer requests, it is several times slower.
            progress("notify: reference (httpx loop)", 0, 1)
            count = max(1, min(result.correctness.expected, 2000))
            result.httpx_requests = count
            result.httpx_requests_per_s, result.httpx_requests_per_cpu_second = await _timed(
                httpx_loop(receiver.url("/baseline"), count, body, concurrency), count
            )
        return result
    finally:
        await receiver.aclose()


@contextlib.asynccontextmanager
async def _dispatching(
    options: BenchOptions, root: Path, routing: Routing, routing_file: Path
) -> AsyncIterator[tuple[SqlAlertStore, str, dict[str, list[int]]]]:
    """The bench's store (its writes go through the outbox hook) and the dispatcher(s) sending."""
    if options.mode == "embedded":
        from auditflow.notify.dispatcher import Dispatcher

        store = SqlAlertStore(f"sqlite:///{root / 'notify.sqlite3'}")
        async with store:
            await store.migrate()
            store.transition_hook = OutboxWriter(routing)
            dispatcher = Dispatcher(store, routing)
            await dispatcher.start()
            try:
                yield store, "in the bench process (as in `auditflow run`), SQLite", {}
            finally:
                await dispatcher.aclose()
        return
    from auditflow.bench.deployment import Deployment

    deployment = Deployment(options.servers, root)
    await deployment.create_database()
    try:
        store = SqlAlertStore(deployment.database_url)
        async with store:
            await store.migrate()
            store.transition_hook = OutboxWriter(routing)
            deployment.overrides["AUDITFLOW_NOTIFY_CONFIG"] = str(routing_file)
            await deployment.serve("dispatcher", options.dispatchers)
            where = f"{options.dispatchers} `serve dispatcher` process(es), PostgreSQL"
            yield store, where, {"dispatcher": deployment.pids("dispatcher")}
    finally:
        if options.keep:
            await deployment.stop_processes()
        else:
            await deployment.destroy()


async def _measure(
    options: BenchOptions,
    store: SqlAlertStore,
    routing: Routing,
    receiver: ReceiverProcess,
    processes: dict[str, list[int]],
    where: str,
    progress: Progress,
) -> NotifyResult:
    duration = options.duration or DEFAULT_DURATION_S
    total = max(1, int(options.notify_rate * duration))
    base = datetime.now(UTC).replace(microsecond=0)
    alerts = [alert for chunk in seed_alerts(total, 10_000, base) for alert in chunk]

    async def depth() -> dict[str, int]:
        return {"outbox": await outbox.depth(store)}

    async with Sampler(processes, depth, interval=0.25) as sampler:
        written = await write_alerts(store, alerts, options.notify_rate, progress)
        await _until_sent(store, len(alerts) * len(routing.channels), options.timeout, progress)
    received = [(key, at) for key, at in await receiver.received() if not key.startswith("baseline-")]
    rows = await _rows(store)
    correctness = judge(rows, received, len(alerts) * len(routing.channels))
    created = {key: created_ms for key, created_ms, _ in rows}
    first_arrival: dict[str, float] = {}
    for key, at in received:
        first_arrival.setdefault(key, at)
    latencies = [(at - created[key] / 1000) * 1000 for key, at in first_arrival.items() if key in created]
    ranked = percentiles(latencies)
    last = max(first_arrival.values(), default=written.started)
    seconds = max(last - written.started, 1e-9)
    samples = [(t, values["outbox"]) for t, values in sampler.depths if values.get("outbox", -1) >= 0]
    depths = [d for _, d in samples] or [0]
    final = await outbox.depth(store)
    label = "dispatcher" if "dispatcher" in sampler.stats else "bench"
    stats = sampler.stats[label]
    cpu = (stats.cpu_end or 0.0) - (stats.cpu_start or 0.0)
    return NotifyResult(
        store=store.url.split(":", 1)[0].split("+", 1)[0],
        dispatchers=where,
        channels=len(routing.channels),
        batch_size=routing.delivery.batch_size,
        concurrency=routing.delivery.concurrency,
        target_alerts_per_s=options.notify_rate,
        alerts=written.alerts,
        alerts_per_s=written.alerts / written.seconds,
        offered_deliveries_per_s=written.alerts * len(routing.channels) / written.seconds,
        seconds=seconds,
        deliveries_per_s=len(first_arrival) / seconds,
        latency_ms=Latency(ranked.p50, ranked.p95, ranked.p99, samples=len(latencies), poll_ms=0.0),
        outbox_depth=OutboxDepth(min(depths), max(depths), final, [(round(t, 2), d) for t, d in samples]),
        correctness=correctness,
        processes=sampler.usage(),
        deliveries_per_cpu_second=len(first_arrival) / cpu if cpu > 0 else None,
    )


async def write_alerts(store: SqlAlertStore, alerts: list[Any], rate: float, progress: Progress) -> Written:
    """Upsert `alerts` at `rate` per second (as fast as possible at 0), in one transaction per tick."""
    started_wall, started = time.time(), time.monotonic()
    done = 0
    while done < len(alerts):
        due = len(alerts) if rate <= 0 else min(len(alerts), int((time.monotonic() - started) * rate) + 1)
        if due > done:
            await store.upsert_alerts(alerts[done:due])
            done = due
            progress("notify: writing alerts", done, len(alerts))
        await asyncio.sleep(max(0.0, _TICK_S - (time.monotonic() - started) % _TICK_S))
    return Written(done, started_wall, time.monotonic() - started)


async def _until_sent(store: SqlAlertStore, expected: int, patience_s: float, progress: Progress) -> None:
    """Until no row is pending, or nothing changed for `patience_s` seconds."""
    last_change, last = time.monotonic(), -1
    while True:
        pending = await outbox.depth(store)
        progress("notify: delivering", max(0, expected - pending), expected)
        if pending == 0:
            return
        if pending != last:
            last_change, last = time.monotonic(), pending
        elif time.monotonic() - last_change > patience_s:
            return
        # Each look is two COUNTs on the store the dispatcher uses: no more often than the depth sampler.
        await asyncio.sleep(0.25)


async def _rows(store: SqlAlertStore) -> list[tuple[str, int, str]]:
    async with store.connection(write=False) as conn:
        query = sa.select(deliveries.c.delivery_id, deliveries.c.created_at, deliveries.c.status)
        return [(str(key), created, status) for key, created, status in (await conn.execute(query)).all()]


def judge(rows: list[tuple[str, int, str]], received: list[tuple[str, float]], rows_due: int) -> DeliveryCorrectness:
    """Every outbox row received exactly once, nothing else received, every alert's rows written."""
    expected = {key for key, _, _ in rows}
    seen = Counter(key for key, _ in received)
    lost = len(expected - seen.keys())
    duplicated = sum(n - 1 for n in seen.values() if n > 1)
    unexpected = len(seen.keys() - expected)
    missing = max(0, rows_due - len(expected))
    dead = sum(1 for _, _, status in rows if status == "dead")
    ok = not (lost or duplicated or unexpected or missing or dead)
    return DeliveryCorrectness(len(expected), len(seen), lost, duplicated, unexpected, missing, dead, ok)


async def _sample_body(store: SqlAlertStore) -> bytes:
    """One delivery's message as the webhook sends it (the baseline posts bodies of its size)."""
    async with store.connection(write=False) as conn:
        row = (await conn.execute(sa.select(deliveries.c.delivery_id, deliveries.c.payload).limit(1))).first()
    if row is None:
        return b"{}"
    return orjson.dumps({"delivery_id": str(row[0]), **row[1]}, option=orjson.OPT_SORT_KEYS)


async def _timed(loop: Coroutine[Any, Any, None], count: int) -> tuple[float, float]:
    """Requests per second and per CPU-second of this process while `loop` sends `count` requests."""
    cpu, started = time.process_time(), time.monotonic()
    await loop
    return count / (time.monotonic() - started), count / max(time.process_time() - cpu, 1e-9)


async def aiohttp_loop(url: str, count: int, body: bytes, concurrency: int) -> None:
    """A plain aiohttp loop to the receiver (the dispatcher's client library): a delivery's body, the
    dispatcher's concurrency, one session with kept-alive connections; nothing read from or written to
    a database, nothing signed."""
    limit = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30.0)) as session:

        async def post(number: int) -> None:
            async with limit:
                headers = {"Content-Type": "application/json", "Idempotency-Key": f"baseline-{number}"}
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    response.raise_for_status()

        await asyncio.gather(*(post(n) for n in range(count)))


async def httpx_loop(url: str, count: int, body: bytes, concurrency: int) -> None:
    """The same loop with one httpx client."""
    skip_failing_sniffio_import()  # as the dispatcher did when it used httpx: the client's own cost only
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=30.0) as client:

        async def post(number: int) -> None:
            async with limit:
                headers = {"Content-Type": "application/json", "Idempotency-Key": f"baseline-{number}"}
                (await client.post(url, content=body, headers=headers)).raise_for_status()

        await asyncio.gather(*(post(n) for n in range(count)))
