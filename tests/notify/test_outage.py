"""Acceptance: the receiver is down for a simulated hour while alerts keep coming. With the dispatcher's
clock injected (no real waiting), the deliveries are held in the database (the outbox depth grows, none
dies), the dispatcher's memory stays flat because it keeps no rows, and after the receiver recovers
every delivery id arrives exactly once, on SQLite and on PostgreSQL."""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Mapping

import pytest
import sqlalchemy as sa

from auditflow.backends.store.schema import notification_deliveries as deliveries
from auditflow.backends.store.sql import SqlAlertStore
from auditflow.model.event import Severity
from auditflow.notify.dispatcher import Dispatcher
from auditflow.notify.http import Answer, HttpClient, PostError
from auditflow.notify.outbox import OutboxWriter, depth
from auditflow.notify.routing import Routing
from tests.factories import make_alert
from tests.notify.conftest import SECRET, routing_dict
from tests.notify.receiver import WebhookReceiver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

HOUR = 3600.0
STEP = 60.0  # simulated seconds per round
PER_STEP = 34  # new alerts per round: 2,040 in the hour
CRITICAL_EVERY = 10  # every tenth alert is critical and also goes to the digest route


class Outage(HttpClient):
    """A receiver that refuses every connection until `until` on the simulated clock, then is reached
    over real HTTP."""

    def __init__(self, clock: Callable[[], float], until: float) -> None:
        super().__init__()
        self.clock = clock
        self.until = until
        self.refused = 0
        self.failures_after: list[str] = []  # attempts that failed once the receiver was back

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], seconds: float) -> Answer:
        if self.clock() < self.until:
            self.refused += 1
            raise PostError("ConnectError", "Cannot connect to host: [Errno 111] Connection refused")
        try:
            return await super().post(url, body, headers, seconds)
        except BaseException as exc:  # no answer in time, or the connection failed
            self.failures_after.append(f"{headers.get('Idempotency-Key')}: {exc!r}")
            raise


def outage_routing(url: str) -> Routing:
    raw = routing_dict(url, max_attempts=100, initial_backoff="1m", max_backoff="15m", batch_size=200, concurrency=4)
    # A request that outlasts its timeout is sent again (at least once): give the test receiver, whose
    # threads share this process's interpreter lock with the dispatcher, time and few requests at once.
    raw["channels"]["soc"]["timeout"] = 30
    raw["delivery"]["lease"] = 120
    raw["routes"] = [
        {"name": "all", "channels": ["soc"]},
        {"name": "critical-digest", "channels": ["soc"], "min_severity": "CRITICAL", "digest": "5m"},
    ]
    return Routing.model_validate(raw)


async def drain(dispatcher: Dispatcher) -> None:
    while await dispatcher.run_once() >= dispatcher.routing.delivery.batch_size:
        pass


async def pending_payload_bytes(store: SqlAlertStore) -> int:
    """What holding the waiting rows in memory would cost: the bound below must be well under it."""
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    async with store.connection(write=False) as conn:
        rows = (await conn.execute(sa.select(deliveries).where(deliveries.c.status == "pending"))).all()
    held = tracemalloc.get_traced_memory()[0] - before
    del rows
    return held


async def test_a_receiver_down_for_an_hour_loses_nothing_and_costs_no_memory(
    outbox_store: SqlAlertStore,
) -> None:
    start = time.time()
    now = [start]

    def clock() -> float:
        return now[0]

    with WebhookReceiver(SECRET) as receiver:
        routing = outage_routing(receiver.url)
        outbox_store.transition_hook = OutboxWriter(routing)
        outage = Outage(clock, until=start + HOUR)
        dispatcher = Dispatcher(outbox_store, routing, client=outage, clock=clock)
        written = critical = 0
        try:
            tracemalloc.start()
            warm_up = int(HOUR / STEP) // 10
            baseline = depth_at_warm_up = 0
            for step in range(int(HOUR / STEP)):
                if step == warm_up:  # caches, pools and compiled statements are in place by now
                    gc.collect()
                    baseline = tracemalloc.get_traced_memory()[0]
                    depth_at_warm_up = await depth(outbox_store)
                batch = [
                    make_alert(severity=Severity.CRITICAL if (written + i) % CRITICAL_EVERY == 0 else Severity.ERROR)
                    for i in range(PER_STEP)
                ]
                await outbox_store.upsert_alerts(batch)
                written += len(batch)
                critical += sum(1 for alert in batch if alert.severity == Severity.CRITICAL)
                del batch
                await drain(dispatcher)
                now[0] += STEP
            gc.collect()
            growth = tracemalloc.get_traced_memory()[0] - baseline
            held = await pending_payload_bytes(outbox_store)
            tracemalloc.stop()

            # The hour is over: everything waits in the database, nothing was given up.
            depth_after_hour = await depth(outbox_store)
            async with outbox_store.connection(write=False) as conn:
                query = sa.select(deliveries.c.status, sa.func.count()).group_by(deliveries.c.status)
                statuses = {str(status): int(count) for status, count in (await conn.execute(query)).all()}
            assert receiver.seen() == []
            assert outage.refused > written  # retried all along, not parked
            assert "dead" not in statuses
            assert depth_after_hour == written + critical  # each change: its single row and its digest item
            assert depth_after_hour - depth_at_warm_up > 1500
            print(
                f"\n{outbox_store.url.split(':')[0]}: {written} alerts, {outage.refused} refused attempts,"
                f" depth {depth_at_warm_up} -> {depth_after_hour}, dispatcher memory growth {growth / 1024:.0f} KiB,"
                f" the pending rows in memory would take {held / 1024:.0f} KiB"
            )
            # The dispatcher keeps no rows: its growth is a small fraction of what the rows would take.
            assert held > 2 * 1024 * 1024
            assert growth < held / 8

            # The receiver is back: within the longest back-off every delivery goes out, once.
            for _ in range(60):
                await drain(dispatcher)
                if await depth(outbox_store) == 0:
                    break
                now[0] += STEP
        finally:
            await dispatcher.aclose()
            await outage.aclose()
            if tracemalloc.is_tracing():
                tracemalloc.stop()
        requests = receiver.seen()

    assert await depth(outbox_store) == 0
    async with outbox_store.connection(write=False) as conn:
        rows = (await conn.execute(sa.select(deliveries.c.delivery_id, deliveries.c.status, deliveries.c.event))).all()
    assert {status for _, status, _ in rows} == {"sent"}
    keys = Counter(request.key for request in requests)
    repeated = sorted(key for key, count in keys.items() if count > 1)
    # Exactly once per delivery id. (A repeat would only be legitimate after an attempt that failed on the
    # sender's side, e.g. its timeout on an overloaded machine: the message says which, if any.)
    assert repeated == [], f"sent again: {repeated[:5]}; attempts failed after recovery: {outage.failures_after[:5]}"
    assert set(keys) == {str(delivery_id) for delivery_id, _, _ in rows}
    assert all(request.signature_ok for request in requests)
    singles = [request for request in requests if request.event != "digest"]
    digests = [request for request in requests if request.event == "digest"]
    assert len(singles) == written
    assert sum(request.body["count"] for request in digests) == critical
