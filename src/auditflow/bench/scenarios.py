"""The scenarios beside the end-to-end run: alert persistence through the store's batched upsert,
the alerts API over a large seeded store, and analysis memory with many open windows."""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

import httpx

from auditflow.backends.state import WindowState
from auditflow.backends.store import AlertStore
from auditflow.backends.store.queries import encode_cursor
from auditflow.bench.baselines import InsertOne
from auditflow.bench.measure import percentiles, rss_bytes
from auditflow.bench.results import MemoryResult, PageLatency, PersistenceResult
from auditflow.bench.workload import WorkloadSpec, build, open_windows
from auditflow.codec import decode_events
from auditflow.model.alert import Alert, AlertStatus
from auditflow.model.event import Severity
from auditflow.rules import Detector, RuleSet

_SEVERITIES = list(Severity)


def pipeline_alerts(count: int, seed: int) -> list[Alert]:
    """Alerts shaped like the pipeline's burst alerts: three sample events each, distinct ids."""
    workload = build(WorkloadSpec(events=count * 3, batch_size=3000, attack_share=0.0, seed=seed))
    events = [event for body in workload.bodies for event in decode_events(body).items]
    alerts = []
    for index in range(count):
        sample = events[index * 3 : index * 3 + 3]
        alerts.append(
            Alert(
                alert_id=UUID(int=(seed << 64) + index, version=4),
                rule_id="failed-login-burst",
                rule_name="Failed login burst",
                rule_kind="threshold",
                severity=Severity.ERROR,
                description=f"3 failed logins for user u{index} on h{index % 50} within 1m",
                group={"user_id": f"u{index}", "server_hostname": f"h{index % 50}"},
                user_id=f"u{index}",
                server_hostname=f"h{index % 50}",
                first_seen=sample[0].timestamp,
                last_seen=sample[-1].timestamp,
                occurrences=3,
                event_ids=[event.event_id for event in sample],
                sample_events=sample,
                tags=["authentication", "brute-force"],
            )
        )
    return alerts


async def persistence(
    store: AlertStore, alerts: list[Alert], *, batch: int, writers: int, insert_one: InsertOne, naive_count: int
) -> PersistenceResult:
    """Alerts/s through `upsert_alerts` in batches (several writers at once), and through one INSERT
    per alert for the first `naive_count` of them."""
    queue = [alerts[i : i + batch] for i in range(0, len(alerts), batch)]
    started = time.monotonic()

    async def writer() -> None:
        while queue:
            await store.upsert_alerts(queue.pop())

    await asyncio.gather(*(writer() for _ in range(writers)))
    elapsed = time.monotonic() - started
    stored = await store.count()
    naive_alerts = alerts[:naive_count]
    started = time.monotonic()
    for alert in naive_alerts:
        await insert_one(alert)
    naive_elapsed = time.monotonic() - started
    return PersistenceResult(
        alerts=len(alerts),
        batch=batch,
        writers=writers,
        alerts_per_s=len(alerts) / elapsed,
        stored=stored,
        naive_alerts=len(naive_alerts),
        naive_alerts_per_s=len(naive_alerts) / naive_elapsed if naive_alerts else None,
    )


def seed_alerts(count: int, chunk: int, base: datetime) -> Iterator[list[Alert]]:
    """`count` alerts one second apart going back from `base` (newest first is index 0), built
    without validation: the values are known to be valid and a million validations cost minutes."""
    for start in range(0, count, chunk):
        yield [_seed_alert(i, base) for i in range(start, min(start + chunk, count))]


def seed_position(index: int, base: datetime) -> tuple[int, UUID]:
    """The sort key of seeded alert `index`: where a keyset page after it starts."""
    first_seen = base - timedelta(seconds=index)
    return int(first_seen.timestamp() * 1000), UUID(int=index + 1, version=4)


def _seed_alert(index: int, base: datetime) -> Alert:
    _, alert_id = seed_position(index, base)
    first_seen = base - timedelta(seconds=index)
    user, host = f"u{index % 5000}", f"h{index % 200}"
    return Alert.model_construct(
        alert_id=alert_id,
        rule_id=f"rule-{index % 8}",
        rule_name=f"Rule {index % 8}",
        rule_kind="threshold",
        severity=_SEVERITIES[index % 4],
        status=AlertStatus.OPEN,
        description=f"seeded alert {index} for {user} on {host}",
        group={"user_id": user, "server_hostname": host},
        user_id=user,
        server_hostname=host,
        first_seen=first_seen,
        last_seen=first_seen,
        occurrences=1,
        event_ids=[],
        sample_events=[],
        tags=["seeded"],
    )


async def seed(store: AlertStore, count: int, progress: Callable[[int, int], None]) -> tuple[datetime, float]:
    base = datetime.now(UTC).replace(microsecond=0)
    started = time.monotonic()
    done = 0
    for alerts in seed_alerts(count, 10_000, base):
        await store.upsert_alerts(alerts)
        done += len(alerts)
        progress(done, count)
    return base, count / (time.monotonic() - started)


async def api_latency(
    client: httpx.AsyncClient, base: datetime, seeded: int, requests: int, limit: int = 50
) -> dict[str, PageLatency]:
    """p50/p95/p99 of GET /api/v1/alerts for the first page and for a page 90 % deep in the keyset."""
    deep_ms, deep_id = seed_position(int(seeded * 0.9), base)
    pages: dict[str, dict[str, str | int]] = {
        "first_page": {"limit": limit},
        "deep_page": {"limit": limit, "cursor": encode_cursor(deep_ms, deep_id)},
        "deep_page_filtered": {"limit": limit, "cursor": encode_cursor(deep_ms, deep_id), "severity": "CRITICAL"},
    }
    result: dict[str, PageLatency] = {}
    for name, params in pages.items():
        timings = []
        items = 0
        for _ in range(requests):
            started = time.perf_counter()
            response = await client.get("/api/v1/alerts", params=params)
            timings.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            items = len(response.json()["items"])
        ranked = percentiles(timings)
        result[name] = PageLatency(ranked.p50, ranked.p95, ranked.p99, requests, items)
    return result


async def open_windows_memory(
    state: WindowState, rules: Callable[[], RuleSet], users: int, process: str, rss_pid: int | None = None
) -> MemoryResult:
    """Open threshold and sequence windows for `users` distinct users in this process and report
    the RSS of `rss_pid` (default: this process, described by `process`) before and after."""
    pid = rss_pid or os.getpid()
    gc.collect()
    before = rss_bytes(pid) or 0
    detector = Detector(state, rules)
    for body in open_windows(users, 1000):
        await detector.process(decode_events(body).items)
    gc.collect()
    after = rss_bytes(pid) or 0
    return MemoryResult(users, before / 2**20, after / 2**20, process)
