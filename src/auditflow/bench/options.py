"""What one `auditflow bench` run does: every option declared once, with its default, its command
line flag and its help. The click command, the defaults and `--help` are all derived from here, so
only click is imported (the CLI loads this module on every invocation)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, get_type_hints

import click

if TYPE_CHECKING:
    from auditflow.bench.workload import WorkloadSpec

Mode = Literal["embedded", "distributed"]
Scenario = Literal["pipeline", "persistence", "api", "memory", "ingest", "rules", "notify"]
SCENARIOS: tuple[Scenario, ...] = ("pipeline", "persistence", "api", "memory", "ingest", "rules", "notify")
NOISE_TYPES = (
    "user_login",
    "user_logout",
    "file_modified",
    "sudo_command",
    "service_state_change",
    "group_modified",
    "user_created",
)

# With --duration and no --rate, this many events per second of duration are prepared; the run
# stops sending at the duration (or when they are used up).
ASAP_EVENTS_PER_S = 40_000

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Servers:
    broker_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    state_url: str = "redis://127.0.0.1:6379/0"
    admin_database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"

    def database_url(self, name: str) -> str:
        base, _, _ = self.admin_database_url.rpartition("/")
        return f"{base}/{name}"


def _scenarios(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    return SCENARIOS if "all" in value else tuple(dict.fromkeys(value))


def _mix(_ctx: click.Context, _param: click.Parameter, value: str) -> dict[str, float]:
    from auditflow.bench.workload import DEFAULT_MIX, parse_mix

    try:
        return parse_mix(value) if value else dict(DEFAULT_MIX)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _default_mix() -> dict[str, float]:
    from auditflow.bench.workload import DEFAULT_MIX

    return dict(DEFAULT_MIX)


@dataclass(frozen=True, slots=True)
class Cli:
    """How a `BenchOptions` field appears on the command line (in its `Annotated` type)."""

    help: str
    type: Any = None
    decl: str | None = None  # default: --field-name
    multiple: bool = False
    is_flag: bool = False
    callback: Callable[[click.Context, click.Parameter, Any], Any] | None = None
    # What the command line starts from when it is not the field's default (text a callback parses).
    cli_default: str | None = None


@dataclass(frozen=True)
class BenchOptions:
    mode: Annotated[
        Mode,
        Cli(
            "embedded: one in-process Runtime (memory broker and state, SQLite). distributed: `auditflow serve`"
            " processes for generator, analysis and notification on RabbitMQ, Redis and PostgreSQL.",
            click.Choice(["embedded", "distributed"]),
        ),
    ] = "embedded"
    scenarios: Annotated[
        tuple[Scenario, ...],
        Cli(
            "Repeatable. pipeline: events end to end with latency, correctness and both baselines;"
            " persistence: alerts/s through the store's batched upsert vs one INSERT per alert;"
            " api: alerts API latency over --seed-alerts stored alerts; memory: analysis RSS with"
            " --window-users users in open windows; ingest: log lines/s per parser format against a plain"
            " `re` loop, and end to end into the embedded pipeline (in either mode); rules: detector CPU per"
            " event with the --rules/--sigma rules beside the shipped pack, against the pack alone (the default"
            " when --rules or --sigma is given); notify: webhook deliveries/s, latency, outbox depth and lost or"
            " repeated deliveries while alerts are written at --notify-rate, against a plain aiohttp loop to the"
            " same receiver; all: every one.",
            click.Choice([*SCENARIOS, "all"]),
            decl="--scenario",
            multiple=True,
            callback=_scenarios,
        ),
    ] = ("pipeline",)
    rate: Annotated[float, Cli("Target events/s; 0 sends as fast as possible.", click.FloatRange(min=0))] = 0
    duration: Annotated[
        float | None,
        Cli(
            "Seconds to send for, instead of --events: rate times duration events are prepared"
            f" ({ASAP_EVENTS_PER_S:,} per second when sending as fast as possible) and sending stops at the"
            " duration.",
            click.FloatRange(min=0.1),
        ),
    ] = None
    events: Annotated[int, Cli("Events to send.", click.IntRange(min=1))] = 100_000
    batch_size: Annotated[
        int, Cli("Events per request (distributed) or per submit (embedded).", click.IntRange(1, 10_000))
    ] = 500
    concurrency: Annotated[int, Cli("Requests in flight at once.", click.IntRange(min=1))] = 4
    mix: Annotated[
        Mapping[str, float],
        Cli(
            "Benign event-type weights, e.g. `user_login=40,file_modified=15`."
            f" Types: {', '.join(NOISE_TYPES)}. Default: the realistic mix in the bench's workload module.",
            callback=_mix,
            cli_default="",
        ),
    ] = field(default_factory=_default_mix)
    users: Annotated[int, Cli("Distinct users in the benign events.", click.IntRange(min=1))] = 1000
    hosts: Annotated[int, Cli("Distinct hosts.", click.IntRange(min=1))] = 50
    attack_share: Annotated[
        float,
        Cli(
            "Share of events that belong to attack bursts (three failed logins for a new user and host:"
            " exactly one alert each, whose id is known before sending).",
            click.FloatRange(0, 1),
        ),
    ] = 0.01
    seed: Annotated[int, Cli("Random seed: the same seed sends the same events.", int)] = 1
    broker_url: Annotated[str, Cli("RabbitMQ (distributed).")] = Servers.broker_url
    state_url: Annotated[str, Cli("Redis (distributed).")] = Servers.state_url
    database_url: Annotated[
        str,
        Cli("PostgreSQL (distributed): a role allowed to CREATE DATABASE; each run uses a new database and drops it."),
    ] = Servers.admin_database_url
    ingest: Annotated[
        Literal["api", "broker"],
        Cli(
            "distributed: POST to the generator service's ingest API, or publish straight to the events queue.",
            click.Choice(["api", "broker"]),
        ),
    ] = "api"
    analysis_replicas: Annotated[int, Cli("Analysis processes (distributed).", click.IntRange(1, 16))] = 1
    generator_replicas: Annotated[int, Cli("Ingest processes (distributed).", click.IntRange(1, 16))] = 1
    baselines: Annotated[
        bool, Cli("Measure the raw-broker and naive baselines after the pipeline.", decl="--baselines/--no-baselines")
    ] = True
    naive_events: Annotated[int, Cli("Events through the naive baseline.", click.IntRange(min=1))] = 3000
    persist_alerts: Annotated[int, Cli("Alerts written by the persistence scenario.", click.IntRange(min=1))] = 50_000
    store_batch: Annotated[int, Cli("Alerts per upsert (persistence).", click.IntRange(min=1))] = 1000
    writers: Annotated[int, Cli("Concurrent upserts (persistence).", click.IntRange(min=1))] = 2
    naive_alerts: Annotated[int, Cli("Alerts INSERTed one by one (persistence baseline).", click.IntRange(min=1))] = (
        2000
    )
    seed_alerts: Annotated[int, Cli("Alerts stored before the api scenario's requests.", click.IntRange(min=1))] = (
        1_000_000
    )
    api_requests: Annotated[int, Cli("Requests per page kind (api).", click.IntRange(min=1))] = 200
    window_users: Annotated[int, Cli("Distinct users with open windows (memory).", click.IntRange(min=1))] = 100_000
    log_lines: Annotated[int, Cli("Generated log lines per format sample (ingest).", click.IntRange(min=1))] = 100_000
    rules: Annotated[
        tuple[Path, ...],
        Cli(
            "Repeatable. Rule files or directories, read as `auditflow run --rules` reads them (AuditFlow"
            " YAML, `*.sigma.yml` converted on load), measured beside the shipped pack (rules scenario).",
            click.Path(exists=True, path_type=Path),
            multiple=True,
        ),
    ] = ()
    sigma: Annotated[
        tuple[Path, ...],
        Cli(
            "Repeatable. Sigma files or directories (every *.yml/*.yaml below, as `import-sigma` reads"
            " them), converted on the fly; rules AuditFlow cannot evaluate are counted and left out.",
            click.Path(exists=True, path_type=Path),
            multiple=True,
        ),
    ] = ()
    rules_count: Annotated[
        int | None,
        Cli(
            "Also measure the pack plus this many extra rules: the --rules/--sigma rules, then copies of"
            " them in turn under new ids.",
            click.IntRange(min=1),
        ),
    ] = None
    rules_pad: Annotated[
        Literal["repeat", "vary"],
        Cli(
            "How --rules-count pads: repeat the rules as they are, or vary each copy's substrings (the"
            " text of contains/startswith/endswith) so the copies are distinct rules of the same shape.",
            click.Choice(["repeat", "vary"]),
        ),
    ] = "repeat"
    rule_lines: Annotated[
        int, Cli("Generated log lines per format, parsed into the rules scenario's events.", click.IntRange(min=1))
    ] = 1000
    rules_repeats: Annotated[
        int, Cli("Runs of each rule set (rules scenario); the fastest counts.", click.IntRange(1, 100))
    ] = 5
    every_rule: Annotated[
        bool,
        Cli(
            "Rules scenario: also run each set with every rule evaluated for every event (no rule gate),"
            " the reference whose alerts the gated run must equal.",
            decl="--every-rule/--no-every-rule",
        ),
    ] = True
    notify_rate: Annotated[
        float,
        Cli(
            "New alerts/s written during the notify scenario (for --duration seconds, 10 by default); 0 writes"
            " them all at once.",
            click.FloatRange(min=0),
        ),
    ] = 1000
    notify_channels: Annotated[
        int, Cli("Webhook channels every alert is routed to (deliveries per alert, notify).", click.IntRange(1, 50))
    ] = 3
    notify_batch_size: Annotated[
        int, Cli("delivery.batch_size of the notify scenario's routing file; 0: the default.", click.IntRange(0, 1000))
    ] = 0
    notify_concurrency: Annotated[
        int, Cli("delivery.concurrency of the notify scenario's routing file; 0: the default.", click.IntRange(0, 200))
    ] = 0
    dispatchers: Annotated[
        int,
        Cli(
            "`auditflow serve dispatcher` processes (notify, distributed); embedded runs one in the bench process.",
            click.IntRange(1, 16),
        ),
    ] = 1
    timeout: Annotated[
        float, Cli("Seconds without progress before missing alerts count as lost.", click.FloatRange(min=1))
    ] = 30
    keep: Annotated[
        bool, Cli("Keep the run's database, queues and keys (distributed) for inspection.", is_flag=True)
    ] = False

    @property
    def servers(self) -> Servers:
        return Servers(self.broker_url, self.state_url, self.database_url)

    def workload(self) -> WorkloadSpec:
        from auditflow.bench.workload import WorkloadSpec

        events = self.events
        if self.duration is not None:
            events = int(self.duration * (self.rate or ASAP_EVENTS_PER_S))
        return WorkloadSpec(
            events=events,
            batch_size=self.batch_size,
            users=self.users,
            hosts=self.hosts,
            attack_share=self.attack_share,
            mix=dict(self.mix),
            seed=self.seed,
        )

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> BenchOptions:
        """The options from the parsed command line (other parameters are ignored)."""
        return cls(**{f.name: params[f.name] for f in fields(cls) if f.name in params})


def _cli_specs() -> list[tuple[Field[Any], Cli]]:
    hints = get_type_hints(BenchOptions, include_extras=True)
    specs = []
    for item in fields(BenchOptions):
        cli = next((m for m in getattr(hints[item.name], "__metadata__", ()) if isinstance(m, Cli)), None)
        if cli is not None:
            specs.append((item, cli))
    return specs


def click_options(command: F) -> F:
    """Decorate a click command with one option per `BenchOptions` field, in declaration order."""
    for item, cli in reversed(_cli_specs()):
        default: Any = cli.cli_default
        if default is None:
            default = None if item.default is MISSING else item.default
        if cli.multiple and isinstance(default, tuple):
            default = list(default)
        extra: dict[str, Any] = {"multiple": True} if cli.multiple else {}
        if cli.is_flag:
            extra["is_flag"] = True
        option = click.option(
            cli.decl or "--" + item.name.replace("_", "-"),
            item.name,
            type=cli.type,
            default=default,
            show_default=default not in (None, "") and not cli.is_flag,
            help=cli.help,
            callback=cli.callback,
            **extra,
        )
        command = option(command)
    return command
