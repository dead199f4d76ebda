"""Runs the chosen scenarios against the chosen mode and collects one result document."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from auditflow.backends.broker import Broker
from auditflow.backends.state import WindowState, create_state
from auditflow.backends.store import AlertStore, create_store
from auditflow.bench import baselines, scenarios
from auditflow.bench.measure import find_pids, machine, rss_bytes
from auditflow.bench.options import BenchOptions
from auditflow.bench.pipeline import run_pipeline
from auditflow.bench.results import ApiResult, BenchResult, MemoryResult, PersistenceResult, PipelineResult
from auditflow.bench.workload import build, open_windows
from auditflow.rules.loader import load_rules

Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True)
class Scratch:
    """Backends of the baselines and scenarios, on the mode's servers."""

    broker: Broker
    state: WindowState
    store: AlertStore
    insert_one: baselines.InsertOne
    raw_queue: str
    naive_queue: str


@contextlib.asynccontextmanager
async def _scratch(options: BenchOptions, root: Path, name: str) -> AsyncIterator[Scratch]:
    """Broker, state, store and naive inserter for the baselines and scenarios, on the mode's servers."""
    from auditflow.backends.broker import create_broker

    _mkdir(root)
    if options.mode == "embedded":
        broker: Broker = create_broker(f"memory://{name}")
        state: WindowState = create_state("memory://")
        store: AlertStore = create_store(f"sqlite:///{root / 'scratch.sqlite3'}")
        insert_one, close = await baselines.sqlite_inserter(str(root / "naive.sqlite3"))
        queues = ("raw", "naive")
    else:
        from auditflow.bench.deployment import Deployment

        deployment = Deployment(options.servers, root, name=name)
        await deployment.create_database()
        broker = create_broker(options.servers.broker_url, dead_letter_queue=deployment.dead_letter_queue)
        state = create_state(options.servers.state_url, key_prefix=deployment.key_prefix)
        store = create_store(deployment.database_url)
        insert_one, close = await baselines.postgres_inserter(deployment.database_url)
        queues = (f"{name}.raw", f"{name}.naive")
    try:
        await broker.start()
        await state.start()
        await store.start()
        await store.migrate()
        yield Scratch(broker, state, store, insert_one, *queues)
    finally:
        await close()
        for closer in (broker.aclose, state.aclose, store.aclose):
            with contextlib.suppress(Exception):
                await closer()
        if options.mode == "distributed" and not options.keep:
            await deployment.destroy()


async def run(options: BenchOptions, progress: Progress) -> BenchResult:
    result = BenchResult(options.mode, machine(), describe(options))
    with tempfile.TemporaryDirectory(prefix="auditflow-bench-") as tmp:
        root = Path(tmp)
        for scenario in options.scenarios:
            started = time.monotonic()
            if scenario == "pipeline":
                result.pipeline = await _pipeline(options, root / "pipeline", progress)
            elif scenario == "ingest":
                from auditflow.bench.ingest import run_ingest

                result.ingest = await run_ingest(
                    options.log_lines,
                    root / scenario,
                    batch_size=options.batch_size,
                    seed=options.seed,
                    progress=progress,
                )
            elif scenario == "rules":
                from auditflow.bench.rulecost import run_rules

                result.rules = await run_rules(
                    options.rules,
                    options.sigma,
                    rules_count=options.rules_count,
                    vary=options.rules_pad == "vary",
                    lines_per_format=options.rule_lines,
                    repeats=options.rules_repeats,
                    reference=options.every_rule,
                    seed=options.seed,
                    progress=progress,
                )
            elif scenario == "notify":
                from auditflow.bench.notify import run_notify

                result.notify = await run_notify(options, root / scenario, progress)
            else:
                async with _scratch(options, root / scenario, f"bench{os.urandom(5).hex()}") as scratch:
                    if scenario == "persistence":
                        result.persistence = await _persistence(options, scratch, progress)
                    elif scenario == "api":
                        result.api = await _api(options, scratch, root / scenario, progress)
                    else:
                        result.memory = await _memory(options, scratch, root / scenario, progress)
            result.seconds[scenario] = round(time.monotonic() - started, 1)
    result.machine_after = machine()
    return result


async def _pipeline(options: BenchOptions, root: Path, progress: Progress) -> PipelineResult:
    _mkdir(root)
    progress("preparing workload", 0, 1)
    workload = build(options.workload())
    servers: dict[str, list[int]] = {}
    target_cm: Any
    if options.mode == "embedded":
        from auditflow.bench.embedded import embedded_target

        target_cm = embedded_target(root)
    else:
        from auditflow.bench.distributed import distributed_target

        target_cm = distributed_target(
            options.servers,
            root,
            analysis_replicas=options.analysis_replicas,
            generator_replicas=options.generator_replicas,
            ingest=options.ingest,
            keep=options.keep,
        )
        servers["bench"] = [os.getpid()]
        servers.update({n: find_pids(c) for n, c in (("rabbitmq", "beam.smp"), ("redis", "redis-server"))})
        servers["postgres"] = find_pids("postgres")
    async with target_cm as target:
        result = await run_pipeline(
            target,
            workload,
            rate=options.rate,
            concurrency=options.concurrency,
            patience=options.timeout,
            duration=options.duration,
            progress=lambda done, total: progress("pipeline", done, total),
            extra_processes=servers,
        )
    if options.baselines:
        async with _scratch(options, root / "baselines", f"bench{os.urandom(5).hex()}") as scratch:
            progress("baseline: raw broker", 0, 1)
            result.baseline_raw_broker = await baselines.raw_broker(
                scratch.broker,
                scratch.raw_queue,
                workload.bodies,
                workload.sizes,
                concurrency=options.concurrency,
                prefetch=200,
                batch_size=100,
                linger_ms=10,
            )
            progress("baseline: naive path", 0, 1)
            rules = load_rules(None)
            result.baseline_naive = await baselines.naive_path(
                scratch.broker,
                scratch.naive_queue,
                baselines.single_events(workload.bodies, options.naive_events),
                scratch.state,
                lambda: rules,
                scratch.insert_one,
            )
    return result


async def _persistence(options: BenchOptions, scratch: Scratch, progress: Progress) -> PersistenceResult:
    progress("persistence: preparing alerts", 0, 1)
    alerts = scenarios.pipeline_alerts(options.persist_alerts, options.seed)
    progress("persistence: writing", 0, 1)
    return await scenarios.persistence(
        scratch.store,
        alerts,
        batch=options.store_batch,
        writers=options.writers,
        insert_one=scratch.insert_one,
        naive_count=options.naive_alerts,
    )


async def _api(options: BenchOptions, scratch: Scratch, root: Path, progress: Progress) -> ApiResult:
    store = scratch.store
    base, seed_rate = await scenarios.seed(store, options.seed_alerts, lambda d, t: progress("api: seeding", d, t))
    progress("api: requests", 0, 1)
    if options.mode == "embedded":
        # The embedded product serves its API from the pipeline's own process: call the app in-process.
        from auditflow.app import create_app
        from auditflow.bench.embedded import embedded_settings
        from auditflow.runtime import Runtime

        runtime = Runtime(embedded_settings(root, database_url=store.url), "notification")
        app = create_app(runtime, ["bench-token-0123456789abcdef"], manage_lifecycle=False)
        await runtime.start()
        try:
            await runtime.wait_ready()
            headers = {"Authorization": "Bearer bench-token-0123456789abcdef"}
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench", headers=headers) as client:
                pages = await scenarios.api_latency(client, base, options.seed_alerts, options.api_requests)
        finally:
            await runtime.aclose()
        return ApiResult(options.seed_alerts, seed_rate, **pages)
    from auditflow.bench.deployment import Deployment

    deployment = Deployment(options.servers, root, name=store.url.rsplit("/", 1)[1])
    _mkdir(root)
    try:
        (process,) = await deployment.serve("notification")
        headers = {"Authorization": f"Bearer {deployment.token}"}
        async with httpx.AsyncClient(base_url=process.url, headers=headers, timeout=30.0) as client:
            pages = await scenarios.api_latency(client, base, options.seed_alerts, options.api_requests)
    finally:
        await deployment.stop_processes()
    return ApiResult(options.seed_alerts, seed_rate, **pages)


async def _memory(options: BenchOptions, scratch: Scratch, root: Path, progress: Progress) -> MemoryResult:
    progress("memory: opening windows", 0, 1)
    rules = load_rules(None)
    if options.mode == "embedded":
        where = "bench process hosting analysis with memory:// state"
        return await scenarios.open_windows_memory(scratch.state, lambda: rules, options.window_users, where)
    from auditflow.bench.deployment import Deployment

    name = scratch.store.url.rsplit("/", 1)[1]
    deployment = Deployment(options.servers, root, name=name)
    _mkdir(root)
    broker = scratch.broker
    try:
        (process,) = await deployment.serve("analysis")
        await asyncio.sleep(1.0)  # let start-up allocations settle before the first reading
        before = rss_bytes(process.pid) or 0
        for body in open_windows(options.window_users, 1000):
            await broker.publish(deployment.events_queue, [body])
        await _wait_analyzed(process.url, options.window_users)
        after = rss_bytes(process.pid) or 0
    finally:
        await deployment.stop_processes()
    return MemoryResult(
        options.window_users, before / 2**20, after / 2**20, "analysis service process with redis:// state"
    )


async def _wait_analyzed(url: str, events: int, limit_s: float = 300.0) -> None:
    from auditflow.bench.distributed import _ANALYZED

    deadline = time.monotonic() + limit_s
    async with httpx.AsyncClient(timeout=5.0) as client:
        while time.monotonic() < deadline:
            match = _ANALYZED.search((await client.get(f"{url}/metrics")).content)
            if match and float(match.group(1)) >= events:
                return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"analysis did not evaluate {events} events within {limit_s:.0f} s")


def describe(options: BenchOptions) -> dict[str, Any]:
    """The options as written into the result, server passwords redacted."""
    from auditflow.dependencies import redact_url

    described = asdict(options)
    for key in ("broker_url", "state_url", "database_url"):
        del described[key]
    described["servers"] = {k: redact_url(v) for k, v in asdict(options.servers).items()}
    described["scenarios"] = list(options.scenarios)
    described["mix"] = dict(options.mix)
    described["rules"] = [str(path) for path in options.rules]
    described["sigma"] = [str(path) for path in options.sigma]
    return described


def _mkdir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)  # a local scratch directory: not worth a thread
