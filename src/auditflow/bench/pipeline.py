"""The end-to-end run shared by both modes: send the workload at a rate (or as fast as possible),
watch the store for the expected alerts, and judge throughput, latency and correctness."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from auditflow.backends.store import AlertStore
from auditflow.bench.measure import Sampler, percentiles
from auditflow.bench.results import Correctness, Latency, PipelineResult
from auditflow.bench.workload import BURST_RULE, Workload
from auditflow.model.alert import AlertQuery

POLL_INTERVAL_S = 0.02
POLL_PAGE = 500
Progress = Callable[[int, int], None]  # (events accepted so far, total)


class Target(Protocol):
    """A running pipeline: somewhere to submit request bodies, its store, and its queues."""

    store: AlertStore
    processes: dict[str, list[int]]

    def expect(self, events: int) -> None:
        """The number of events about to be submitted (a target may use it to tell when it is done)."""
        ...

    async def submit(self, body: bytes) -> None: ...

    async def depths(self) -> dict[str, int]: ...

    async def idle(self) -> bool:
        """True when no queue holds work and no batch is in flight (as far as can be seen)."""
        ...


class AlertWatcher:
    """Records when each expected alert first became queryable. Each poll lists the burst alerts
    from the oldest expected one not seen yet (its event time is known) onwards, so alerts that
    arrive out of order (several replicas) are found without reading the whole store each time."""

    MAX_PAGES = 10

    def __init__(self, store: AlertStore, workload: Workload) -> None:
        self.store = store
        self.workload = workload
        self.seen: dict[str, float] = {}
        self.polls = 0
        self._pending = sorted(workload.expected.values(), key=lambda e: e.batch)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def track(self, workload: Workload) -> None:
        """Narrow the watch to a run cut short by time."""
        self.workload = workload
        self._pending = [e for e in self._pending if e.alert_id in workload.expected]

    @property
    def complete(self) -> bool:
        self._advance()
        return not self._pending

    def _advance(self) -> None:
        pending = self._pending
        drop = 0
        while drop < len(pending) and pending[drop].alert_id in self.seen:
            drop += 1
        if drop:
            del pending[:drop]

    async def poll(self) -> None:
        self._advance()
        if not self._pending:
            return
        since = self.workload.event_time(self._pending[0].batch)
        cursor = None
        for _ in range(self.MAX_PAGES):
            query = AlertQuery(rule_id=BURST_RULE, limit=POLL_PAGE, since=since, cursor=cursor)
            page = await self.store.list_alerts(query)
            now = time.monotonic()
            self.polls += 1
            for item in page.items:
                self.seen.setdefault(str(item.alert_id), now)
            cursor = page.next_cursor
            if cursor is None:
                return

    async def _run(self) -> None:
        while True:
            # A store hiccup only delays a sighting; the final audit still counts every alert.
            with contextlib.suppress(Exception):
                await self.poll()
            await asyncio.sleep(POLL_INTERVAL_S)


async def stored_alerts(store: AlertStore) -> tuple[list[tuple[str, str | None, str | None]], int]:
    """Every stored burst alert as (alert_id, user, host), and the number of alerts of other rules."""
    found: list[tuple[str, str | None, str | None]] = []
    cursor = None
    while True:
        page = await store.list_alerts(AlertQuery(rule_id=BURST_RULE, limit=500, cursor=cursor))
        found.extend((str(a.alert_id), a.user_id, a.server_hostname) for a in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    return found, await store.count() - len(found)


async def drive(
    workload: Workload,
    submit: Callable[[bytes], Awaitable[None]],
    rate: float,
    concurrency: int,
    progress: Progress,
    duration: float | None = None,
) -> tuple[list[float], float]:
    """Submit the batches, paced to `rate` events/s (0: as fast as possible) with at most
    `concurrency` in flight, stopping early after `duration` s; returns when each batch that was
    sent was accepted, and the start time."""
    accepted = [0.0] * len(workload.bodies)
    gate = asyncio.Semaphore(concurrency)
    started = time.monotonic()
    sent = 0
    tasks: set[asyncio.Task[None]] = set()

    async def one(index: int) -> None:
        try:
            await submit(workload.bodies[index])
            accepted[index] = time.monotonic()
        finally:
            gate.release()

    for index, size in enumerate(workload.sizes):
        if duration is not None and time.monotonic() - started >= duration:
            del accepted[index:]
            break
        if rate > 0:
            ahead = started + sent / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        await gate.acquire()
        task = asyncio.create_task(one(index))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += size
        progress(sent, workload.events)
    await asyncio.gather(*list(tasks))
    return accepted, started


async def run_pipeline(
    target: Target,
    workload: Workload,
    *,
    rate: float,
    concurrency: int,
    patience: float,
    progress: Progress,
    duration: float | None = None,
    extra_processes: dict[str, list[int]] | None = None,
) -> PipelineResult:
    watcher = AlertWatcher(target.store, workload)
    processes = {**target.processes, **(extra_processes or {})}
    target.expect(workload.events)
    async with Sampler(processes, target.depths) as sampler:
        watcher.start()
        accepted, started = await drive(workload, target.submit, rate, concurrency, progress, duration)
        workload = workload.truncated(len(accepted))
        watcher.track(workload)
        target.expect(workload.events)
        accepted_end = max(accepted)
        done_at = await _wait_processed(target, watcher, workload, patience)
        await watcher.stop()
    await watcher.poll()
    stored, other = await stored_alerts(target.store)
    events = workload.events
    latencies = [
        (watcher.seen[alert_id] - accepted[expected.batch]) * 1000
        for alert_id, expected in workload.expected.items()
        if alert_id in watcher.seen
    ]
    processed_s = done_at - started
    usage = sampler.usage()
    window = sampler.ended - sampler.started
    service_cpu = sum((usage[name].cpu_cores or 0.0) * window for name in target.processes)
    ranked = percentiles(latencies)
    return PipelineResult(
        events=events,
        batches=len(workload.bodies),
        accepted_seconds=accepted_end - started,
        accepted_per_s=events / (accepted_end - started),
        processed_seconds=processed_s,
        processed_per_s=events / processed_s,
        alerts_per_s=len(stored) / processed_s,
        latency_ms=Latency(ranked.p50, ranked.p95, ranked.p99, len(latencies), POLL_INTERVAL_S * 1000),
        correctness=judge(workload, stored, other),
        events_per_cpu_second=events / service_cpu if service_cpu else None,
        processes=usage,
        queue_depths=sampler.queue_depths(),
        cpu_us_per_event={
            name: None if stats.cpu_cores is None else stats.cpu_cores * window / events * 1e6
            for name, stats in usage.items()
        },
    )


async def _wait_processed(target: Target, watcher: AlertWatcher, workload: Workload, patience: float) -> float:
    """When every expected alert is queryable and the pipeline is idle; gives up waiting for
    alerts `patience` s after the last progress (lost alerts never arrive)."""
    last_progress, last_count = time.monotonic(), -1
    while True:
        count = len(watcher.seen)
        now = time.monotonic()
        if count != last_count:
            last_progress, last_count = now, count
        if (watcher.complete or now - last_progress > patience) and await target.idle():
            return now
        await asyncio.sleep(POLL_INTERVAL_S)


def judge(workload: Workload, stored: Sequence[tuple[str, str | None, str | None]], other_rules: int) -> Correctness:
    """Expected vs stored: lost ids, duplicated groups (more than one alert for one burst), extras."""
    expected = workload.expected
    stored_ids = {alert_id for alert_id, _, _ in stored}
    groups: dict[tuple[str | None, str | None], int] = {}
    for _, user, host in stored:
        groups[(user, host)] = groups.get((user, host), 0) + 1
    duplicated = sum(n - 1 for n in groups.values() if n > 1)
    return Correctness(
        expected=len(expected),
        stored=len(stored),
        lost=len(set(expected) - stored_ids),
        duplicated=duplicated,
        unexpected=len(stored_ids - set(expected)) - duplicated + other_rules,
        ok=stored_ids == set(expected) and duplicated == 0 and other_rules == 0,
    )
