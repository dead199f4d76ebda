"""A three-node RabbitMQ cluster losing the node that the clients use, during a stream of events.

The stream goes through the product's ingest path (`Ingestor.submit` on a `RabbitMQBroker` given
the three node URLs, as the API publishes) at about 2,000 events/s; a second broker, as an
analysis replica would, consumes the quorum queue and runs each delivered batch through the
`Detector` with the window state. While the stream runs, the node both clients are connected to is
stopped (`rabbitmqctl stop_app`), then its VM is killed with SIGKILL.

Asserted: the queue has a replica on each node; every event whose publish was confirmed is consumed
at least once; events delivered twice change no alert (the state de-duplicates by event id, so each
host's alert counts each event once); publishing succeeds again after the failure. The measured
gap, duplicates and cluster start time are printed (`pytest -s`) and kept as user properties.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import TypeAdapter

from auditflow.backends.broker import Delivery
from auditflow.backends.broker.rabbitmq import RabbitMQBroker
from auditflow.backends.state import create_state
from auditflow.codec import decode_events
from auditflow.dependencies import Dependency
from auditflow.errors import BackendUnavailable
from auditflow.model import Event
from auditflow.rules import Detector, Rule, RuleSet
from auditflow.services.ingest import Ingestor
from tests.clusters.rabbitmq_cluster import RabbitMQCluster, binaries, rabbitmq_cluster
from tests.conftest import unavailable

pytestmark = [pytest.mark.slow, pytest.mark.rabbitmq]

RATE = 2000  # events per second
BATCH = 100  # events per submit: one every 50 ms
BEFORE_FAILURE = 3.0  # seconds of stream before the node is stopped
AFTER_FAILURE = 4.0  # seconds of stream after it was killed
HOSTS = 10
# Publishing must work again within this time after the node was stopped: the failover waits up
# to its failover_timeout (10 s) for the next node, and the supervision of a dependency marked
# down retries within seconds. A generous bound: it tells a recovery from none, not a speed.
RECOVERY_BOUND = 30.0
_rule = TypeAdapter[Rule](Rule)
PER_HOST = _rule.validate_python(
    {
        "id": "logins-per-host",
        "name": "Logins per host",
        "kind": "threshold",
        "severity": "INFO",
        "where": {"event_type": "user_login"},
        "count": 1,
        "window": "1h",
        "group_by": ["server_hostname"],
        "suppress_for": "1h",
    }
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[RabbitMQCluster]:
    if binaries() is None:
        unavailable("RabbitMQ (rabbitmq-server, rabbitmqctl) is not installed")
    with rabbitmq_cluster(3) as started:
        yield started
    print(f"\nRabbitMQ cluster timings (s): {started.timings}")


class Stream:
    """Submits batches of events at RATE and records what was confirmed and when."""

    def __init__(self, ingestor: Ingestor) -> None:
        self.ingestor = ingestor
        self.confirmed: set[str] = set()
        self.done: list[float] = []  # monotonic time of each confirmed submit
        self.started = time.monotonic()
        self.refusals: list[str] = []  # why a submit was refused (the API would answer 503)
        self.stopping = asyncio.Event()
        self.sequence = 0

    def batch(self) -> list[Event]:
        now = datetime.now(UTC)
        events = []
        for _ in range(BATCH):
            self.sequence += 1
            events.append(
                Event(event_type="user_login", server_hostname=f"host-{self.sequence % HOSTS}", timestamp=now)
            )
        return events

    async def run(self) -> None:
        interval = BATCH / RATE
        self.started = next_at = time.monotonic()
        while not self.stopping.is_set():
            events = self.batch()
            while True:  # as a client answered 503 does: the same events again, shortly
                try:
                    await self.ingestor.submit(events, source="test")
                    break
                except BackendUnavailable as exc:
                    self.refusals.append(str(exc))
                    await asyncio.sleep(0.1)
            self.confirmed.update(str(e.event_id) for e in events)
            self.done.append(time.monotonic())
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def longest_gap_after(self, since: float) -> float:
        """The longest time without a confirmed submit, from `since` on."""
        times = [since] + [t for t in self.done if t > since]
        return max(b - a for a, b in itertools.pairwise(times)) if len(times) > 1 else float("inf")


class Recorder:
    """A consumer as analysis runs it: decode each delivered batch, detect, keep the event ids."""

    def __init__(self) -> None:
        self.deliveries: Counter[str] = Counter()
        self.occurrences: dict[str, int] = {}  # host -> occurrences of its alert, as last published
        self.detector = Detector(create_state("memory://"), lambda: RuleSet.build([PER_HOST], version="t", source="t"))

    async def handle(self, batch: Sequence[Delivery]) -> None:
        events: list[Event] = []
        for delivery in batch:
            events.extend(decode_events(delivery.body).items)
        for alert in await self.detector.process(events):
            self.occurrences[str(alert.group["server_hostname"])] = alert.occurrences
        self.deliveries.update(str(e.event_id) for e in events)


async def _until(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


@pytest.mark.timeout(420)
async def test_losing_a_node_loses_no_event_and_ingest_recovers(
    cluster: RabbitMQCluster, unique_name: str, record_property: Any
) -> None:
    queue, dlq = f"{unique_name}_events", f"{unique_name}_dlq"
    publisher = RabbitMQBroker(cluster.broker_url, dead_letter_queue=dlq)
    consumer = RabbitMQBroker(cluster.broker_url, dead_letter_queue=dlq)
    dependency = Dependency("broker", start=publisher.start, ping=publisher.ping, critical=True, impact="ingest")
    dependency.run()
    await consumer.start()
    assert await _until(lambda: dependency.is_up, 30)
    ingestor = Ingestor(publisher, dependency, queue, batch_size=BATCH)
    recorder = Recorder()
    stream = Stream(ingestor)
    consuming = asyncio.create_task(consumer.consume(queue, recorder.handle, prefetch=1000, batch_size=200))
    streaming = asyncio.create_task(stream.run())
    try:
        # Declared without a group size: a replica on every node of the cluster.
        await asyncio.sleep(BEFORE_FAILURE)
        assert cluster.quorum_members(queue) == sorted(node.name for node in cluster.nodes)
        assert publisher.node is not None
        assert consumer.node == publisher.node  # both start on the first node: it is the one to lose
        victim = cluster.node_at(publisher.node)
        confirmed_before = len(stream.confirmed)

        failed_at = time.monotonic()
        await asyncio.to_thread(victim.stop_app)
        await asyncio.to_thread(victim.kill)
        killed_at = time.monotonic()
        await asyncio.sleep(AFTER_FAILURE)
        stream.stopping.set()
        await asyncio.wait_for(streaming, 60)

        # Publishing works again: batches were confirmed after the kill, on another node.
        assert any(t > killed_at for t in stream.done)
        assert publisher.node != victim.address
        assert consumer.node != victim.address
        gap = stream.longest_gap_after(failed_at)
        assert gap < RECOVERY_BOUND

        # Nothing confirmed is lost: every confirmed event is consumed at least once.
        assert await _until(lambda: stream.confirmed <= recorder.deliveries.keys(), 90), (
            f"{len(stream.confirmed - recorder.deliveries.keys())} confirmed events never consumed"
        )
        await asyncio.sleep(1.0)  # let redeliveries of the last batches arrive before counting
    finally:
        stream.stopping.set()
        await consumer.stop_consuming()
        await asyncio.gather(consuming, streaming, return_exceptions=True)
        await dependency.aclose()
        await publisher.aclose()
        await consumer.aclose()

    duplicated = sum(count - 1 for count in recorder.deliveries.values() if count > 1)
    published_twice = len(recorder.deliveries.keys() - stream.confirmed)  # published again unconfirmed
    # Duplicates are absorbed: each host's alert counts each of its events once, however often it
    # was delivered (the state de-duplicates by event id, as analysis relies on).
    consumed_ids = set(recorder.deliveries)
    assert recorder.occurrences.keys() == {f"host-{n}" for n in range(HOSTS)}
    assert sum(recorder.occurrences.values()) == len(consumed_ids)

    report = {
        "events_confirmed": len(stream.confirmed),
        "events_confirmed_before_failure": confirmed_before,
        "events_consumed_unique": len(consumed_ids),
        "deliveries": sum(recorder.deliveries.values()),
        "duplicate_deliveries": duplicated,
        "lost": len(stream.confirmed - consumed_ids),
        "unconfirmed_but_consumed": published_twice,
        "submit_refusals": len(stream.refusals),
        # The rate achieved before the failure is the baseline of the rate over the whole stream.
        "events_per_s_before_failure": round(confirmed_before / (failed_at - stream.started)),
        "events_per_s": round(len(stream.confirmed) / (stream.done[-1] - stream.started)),
        "publish_gap_s": round(gap, 3),
        "stop_and_kill_s": round(killed_at - failed_at, 3),
        "cluster_start_s": round(cluster.timings.get("start", 0.0), 1),
    }
    for key, value in report.items():
        record_property(key, value)
    print(f"\nRabbitMQ failover: {report}; refusals: {stream.refusals}")
