"""Baselines measured in the same run as the pipeline, so results read as ratios on a noisy machine:
the raw broker limit (the same batches published and consumed with no work) and a naive path in the
original prototype's design (one event per message, one INSERT per alert)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from auditflow.backends.broker import Broker, Delivery
from auditflow.backends.state import WindowState
from auditflow.bench.results import NaiveBaseline, RawBrokerBaseline
from auditflow.model.alert import Alert
from auditflow.model.event import Event
from auditflow.rules import Detector, RuleSet

InsertOne = Callable[[Alert], Awaitable[None]]

NAIVE_TABLE = "bench_naive_alerts"
# Confirms awaited concurrently (still one message per event), so that the naive figure is the
# consumer's, not one network round trip per publish.
NAIVE_PUBLISHERS = 64
_NAIVE_COLUMNS = "alert_id, rule_id, user_id, server_hostname, occurrences, body"


async def raw_broker(
    broker: Broker, queue: str, bodies: Sequence[bytes], sizes: Sequence[int], *, concurrency: int, **consume: int
) -> RawBrokerBaseline:
    """Publish every body (confirmed, as ingest does) while a consumer acks them in batches with
    no processing; events/s over the time until the last one is consumed."""
    await broker.declare(queue)
    done = asyncio.Event()
    consumed = 0

    async def handler(deliveries: Sequence[Delivery]) -> None:
        nonlocal consumed
        consumed += len(deliveries)
        if consumed >= len(bodies):
            done.set()

    consumer = asyncio.create_task(broker.consume(queue, handler, **consume))
    started = time.monotonic()
    gate = asyncio.Semaphore(concurrency)

    async def publish(body: bytes) -> None:
        async with gate:
            await broker.publish(queue, [body])

    await asyncio.gather(*(publish(body) for body in bodies))
    published = time.monotonic() - started
    await done.wait()
    elapsed = time.monotonic() - started
    await broker.stop_consuming(queue)
    await consumer
    events = sum(sizes)
    return RawBrokerBaseline(events, events / published, events / elapsed)


def single_events(bodies: Sequence[bytes], limit: int) -> list[bytes]:
    """The first `limit` events of the workload, one JSON object each."""
    singles: list[bytes] = []
    for body in bodies:
        for item in orjson.loads(body):
            if len(singles) >= limit:
                return singles
            singles.append(orjson.dumps(item))
    return singles


async def naive_path(
    broker: Broker,
    queue: str,
    singles: Sequence[bytes],
    state: WindowState,
    rules: Callable[[], RuleSet],
    insert_one: InsertOne,
) -> NaiveBaseline:
    """One message per event, each publish awaiting its confirm; the consumer takes one message at a
    time, parses it, runs the detector on it (one state round trip per event) and INSERTs each
    alert in its own transaction. The same rules and state backend as the pipeline."""
    await broker.declare(queue)
    detector = Detector(state, rules)
    done = asyncio.Event()
    handled = alerts = 0

    async def handler(deliveries: Sequence[Delivery]) -> None:
        nonlocal handled, alerts
        for delivery in deliveries:
            for alert in await detector.process([Event.model_validate_json(delivery.body)]):
                await insert_one(alert)
                alerts += 1
            handled += 1
        if handled >= len(singles):
            done.set()

    consumer = asyncio.create_task(broker.consume(queue, handler, prefetch=10, batch_size=1, linger_ms=0))
    started = time.monotonic()
    gate = asyncio.Semaphore(NAIVE_PUBLISHERS)

    async def publish(body: bytes) -> None:
        async with gate:
            await broker.publish(queue, [body])

    await asyncio.gather(*(publish(body) for body in singles))
    await done.wait()
    elapsed = time.monotonic() - started
    await broker.stop_consuming(queue)
    await consumer
    return NaiveBaseline(len(singles), len(singles) / elapsed, alerts)


def _naive_values(alert: Alert) -> tuple[Any, ...]:
    body = alert.model_dump_json()
    return (str(alert.alert_id), alert.rule_id, alert.user_id, alert.server_hostname, alert.occurrences, body)


async def postgres_inserter(url: str) -> tuple[InsertOne, Callable[[], Awaitable[None]]]:
    """One INSERT per alert on an autocommit connection, as the prototype's notification service."""
    import psycopg

    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await conn.execute(
        f"CREATE TABLE IF NOT EXISTS {NAIVE_TABLE} (alert_id uuid PRIMARY KEY, rule_id text, user_id text,"
        " server_hostname text, occurrences bigint, body jsonb)"
    )
    statement = (
        f"INSERT INTO {NAIVE_TABLE} ({_NAIVE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"  # noqa: S608 - constants  # nosec B608
        " ON CONFLICT (alert_id) DO UPDATE SET occurrences = excluded.occurrences"
    )

    async def insert(alert: Alert) -> None:
        await conn.execute(statement, _naive_values(alert))

    return insert, conn.close


async def sqlite_inserter(path: str) -> tuple[InsertOne, Callable[[], Awaitable[None]]]:
    """The same on SQLite, blocking the loop like a synchronous driver would."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {NAIVE_TABLE} (alert_id text PRIMARY KEY, rule_id text, user_id text,"
        " server_hostname text, occurrences integer, body text)"
    )
    statement = (
        f"INSERT INTO {NAIVE_TABLE} ({_NAIVE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"  # noqa: S608 - constants  # nosec B608
        " ON CONFLICT (alert_id) DO UPDATE SET occurrences = excluded.occurrences"
    )

    async def insert(alert: Alert) -> None:
        conn.execute(statement, _naive_values(alert))

    async def close() -> None:
        conn.close()

    return insert, close
