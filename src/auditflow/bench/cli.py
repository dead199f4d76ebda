"""The `auditflow bench` command. Only click is imported here: the CLI loads this module on every
invocation, and the bench machinery is imported when the command runs."""

from __future__ import annotations

from typing import Any

import click

_SCENARIOS = ("pipeline", "persistence", "api", "memory")


@click.command()
@click.option(
    "--mode",
    type=click.Choice(["embedded", "distributed"]),
    default="embedded",
    show_default=True,
    help="embedded: one in-process Runtime (memory broker and state, SQLite). distributed: `auditflow serve`"
    " processes for generator, analysis and notification on RabbitMQ, Redis and PostgreSQL.",
)
@click.option(
    "--scenario",
    "scenarios",
    type=click.Choice([*_SCENARIOS, "all"]),
    multiple=True,
    default=("pipeline",),
    show_default=True,
    help="Repeatable. pipeline: events end to end with latency, correctness and both baselines;"
    " persistence: alerts/s through the store's batched upsert vs one INSERT per alert;"
    " api: alerts API latency over --seed-alerts stored alerts; memory: analysis RSS with"
    " --window-users users in open windows; all: every one.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Target events/s; 0 sends as fast as possible.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0.1),
    help="Seconds to send for, instead of --events: rate times duration events are prepared"
    " (40,000 per second when sending as fast as possible) and sending stops at the duration.",
)
@click.option("--events", type=click.IntRange(min=1), default=100_000, show_default=True, help="Events to send.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=500,
    show_default=True,
    help="Events per request (distributed) or per submit (embedded).",
)
@click.option(
    "--concurrency", type=click.IntRange(min=1), default=4, show_default=True, help="Requests in flight at once."
)
@click.option(
    "--mix",
    default="",
    help="Benign event-type weights, e.g. `user_login=40,file_modified=15`."
    " Types: user_login, user_logout, file_modified, sudo_command, service_state_change, group_modified,"
    " user_created. Default: the realistic mix in the bench's workload module.",
)
@click.option(
    "--users", type=click.IntRange(min=1), default=1000, show_default=True, help="Distinct users in the benign events."
)
@click.option("--hosts", type=click.IntRange(min=1), default=50, show_default=True, help="Distinct hosts.")
@click.option(
    "--attack-share",
    type=click.FloatRange(0, 1),
    default=0.01,
    show_default=True,
    help="Share of events that belong to attack bursts (three failed logins for a new user and host:"
    " exactly one alert each, whose id is known before sending).",
)
@click.option(
    "--seed", type=int, default=1, show_default=True, help="Random seed: the same seed sends the same events."
)
@click.option(
    "--broker-url", default="amqp://guest:guest@127.0.0.1:5672/", show_default=True, help="RabbitMQ (distributed)."
)
@click.option("--state-url", default="redis://127.0.0.1:6379/0", show_default=True, help="Redis (distributed).")
@click.option(
    "--database-url",
    default="postgresql://postgres@127.0.0.1:5432/postgres",
    show_default=True,
    help="PostgreSQL (distributed): a role allowed to CREATE DATABASE; each run uses a new database and drops it.",
)
@click.option(
    "--ingest",
    type=click.Choice(["api", "broker"]),
    default="api",
    show_default=True,
    help="distributed: POST to the generator service's ingest API, or publish straight to the events queue.",
)
@click.option(
    "--analysis-replicas",
    type=click.IntRange(1, 16),
    default=1,
    show_default=True,
    help="Analysis processes (distributed).",
)
@click.option(
    "--generator-replicas",
    type=click.IntRange(1, 16),
    default=1,
    show_default=True,
    help="Ingest processes (distributed).",
)
@click.option(
    "--baselines/--no-baselines",
    default=True,
    show_default=True,
    help="Measure the raw-broker and naive baselines after the pipeline.",
)
@click.option(
    "--naive-events",
    type=click.IntRange(min=1),
    default=3000,
    show_default=True,
    help="Events through the naive baseline.",
)
@click.option(
    "--persist-alerts",
    type=click.IntRange(min=1),
    default=50_000,
    show_default=True,
    help="Alerts written by the persistence scenario.",
)
@click.option(
    "--store-batch",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Alerts per upsert (persistence).",
)
@click.option(
    "--writers", type=click.IntRange(min=1), default=2, show_default=True, help="Concurrent upserts (persistence)."
)
@click.option(
    "--naive-alerts",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="Alerts INSERTed one by one (persistence baseline).",
)
@click.option(
    "--seed-alerts",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    help="Alerts stored before the api scenario's requests.",
)
@click.option(
    "--api-requests", type=click.IntRange(min=1), default=200, show_default=True, help="Requests per page kind (api)."
)
@click.option(
    "--window-users",
    type=click.IntRange(min=1),
    default=100_000,
    show_default=True,
    help="Distinct users with open windows (memory).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=30,
    show_default=True,
    help="Seconds without progress before missing alerts count as lost.",
)
@click.option("--keep", is_flag=True, help="Keep the run's database, queues and keys (distributed) for inspection.")
@click.option("--json", "as_json", is_flag=True, help="Print the full result document as JSON instead of tables.")
def bench(**params: Any) -> None:
    """Drive a workload with known expected alerts through the pipeline and report throughput,
    detection latency, queue depths, RSS and CPU per service and correctness, with baselines
    (raw broker; one event per message and one INSERT per alert) measured in the same run.

    Results are only comparable as ratios to those baselines: report the load average with them.
    """
    from auditflow.bench.command import execute

    execute(params)
