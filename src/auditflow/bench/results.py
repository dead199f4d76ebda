"""The typed result of a bench run: one dataclass per measured thing. The `--json` document is
these serialised as they are (orjson reads dataclasses), the tables in `report.py` read them too."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Machine:
    """Cores, memory and load: every figure of a run is read against these."""

    cores: int | None
    memory_gb: float
    loadavg: list[float]


@dataclass(frozen=True, slots=True)
class Percentiles:
    """Nearest-rank percentiles in milliseconds; None when nothing was measured."""

    p50: float | None
    p95: float | None
    p99: float | None


@dataclass(frozen=True, slots=True)
class Latency(Percentiles):
    samples: int
    poll_ms: float


@dataclass(frozen=True, slots=True)
class PageLatency(Percentiles):
    requests: int
    items: int


@dataclass(frozen=True, slots=True)
class Correctness:
    """Expected alerts vs stored ones; `ok` only when each expected alert is stored exactly once
    and nothing else is."""

    expected: int
    stored: int
    lost: int
    duplicated: int
    unexpected: int
    ok: bool


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    cpu_cores: float | None
    rss_peak_mb: float
    rss_last_mb: float


@dataclass(frozen=True, slots=True)
class RawBrokerBaseline:
    events: int
    published_per_s: float
    events_per_s: float


@dataclass(frozen=True, slots=True)
class NaiveBaseline:
    events: int
    events_per_s: float
    alerts: int


@dataclass(slots=True)
class PipelineResult:
    events: int
    batches: int
    accepted_seconds: float
    accepted_per_s: float
    processed_seconds: float
    processed_per_s: float
    alerts_per_s: float
    latency_ms: Latency
    correctness: Correctness
    # Less sensitive to what else runs on the machine than events/s: CPU the services used.
    events_per_cpu_second: float | None
    processes: dict[str, ProcessUsage]
    queue_depths: list[dict[str, float]]
    # Each sampled process's CPU per event in µs (the servers too in distributed mode): the capacity
    # model of docs/scaling.md is built from these.
    cpu_us_per_event: dict[str, float | None] = field(default_factory=dict)
    baseline_raw_broker: RawBrokerBaseline | None = None
    baseline_naive: NaiveBaseline | None = None


@dataclass(frozen=True, slots=True)
class PersistenceResult:
    alerts: int
    batch: int
    writers: int
    alerts_per_s: float
    stored: int
    naive_alerts: int
    naive_alerts_per_s: float | None


@dataclass(frozen=True, slots=True)
class ApiResult:
    seeded: int
    seed_alerts_per_s: float
    first_page: PageLatency
    deep_page: PageLatency
    deep_page_filtered: PageLatency


@dataclass(frozen=True, slots=True)
class MemoryResult:
    users: int
    rss_before_mb: float
    rss_after_mb: float
    process: str


@dataclass(frozen=True, slots=True)
class EndToEndIngest:
    """Log lines parsed with keys, submitted and fully processed by the embedded pipeline."""

    lines: int
    events: int
    alerts: int
    seconds: float
    lines_per_s: float
    # CPU time of the one process (one event loop, so one core) over the same interval.
    lines_per_cpu_s: float


@dataclass(slots=True)
class IngestSample:
    """One sample of generated lines in one parser format: lines per CPU-second parsed to events
    (without and with position keys) and of the plain `re` baseline loop over the same lines."""

    sample: str
    format: str
    lines: int
    events: int
    unparsed: dict[str, int]
    parsed_lines_per_cpu_s: float
    parsed_keyed_lines_per_cpu_s: float
    baseline_lines_per_cpu_s: float
    parsed_vs_baseline: float
    end_to_end: EndToEndIngest | None = None


@dataclass(frozen=True, slots=True)
class IngestResult:
    samples: list[IngestSample]
    batch_size: int


@dataclass(frozen=True, slots=True)
class RuleSetCost:
    """One rule set through the detector: CPU per event with the rule gate and with every rule
    evaluated, both as ratios to the shipped pack (with the gate) of the same run, and the alerts."""

    label: str
    rules: int
    us_per_event: float
    ratio: float
    us_per_event_every_rule: float | None
    ratio_every_rule: float | None
    # Measured apart, outside the detector: choosing the rules to evaluate, and evaluating them. The
    # rest of the total is the window state, alerts and the detector's loop.
    gate_us_per_event: float
    conditions_us_per_event: float
    pack_alerts: int  # alerts of the shipped pack's rules
    extra_alerts: int  # alerts of the other rules
    pack_alerts_unchanged: bool  # the pack's alerts are those it raises alone
    same_alerts_as_every_rule: bool | None  # the gate changed nothing (None: reference not run)

    @property
    def ok(self) -> bool:
        return self.pack_alerts_unchanged and self.same_alerts_as_every_rule is not False


@dataclass(frozen=True, slots=True)
class RulesResult:
    events: int
    lines_per_format: int
    sources: list[str]
    sets: list[RuleSetCost]

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.sets)


@dataclass(frozen=True, slots=True)
class DeliveryCorrectness:
    """Expected deliveries (the outbox rows the alerts wrote) against what the receiver got: `ok` only
    when every one arrived exactly once, nothing else did, and every alert wrote its rows."""

    expected: int
    received: int
    lost: int
    duplicated: int  # repeats beyond the first arrival
    unexpected: int
    missing_rows: int  # alerts x channels minus the rows written
    dead: int
    ok: bool


@dataclass(frozen=True, slots=True)
class OutboxDepth:
    """Pending outbox rows sampled during the run."""

    min: int
    max: int
    final: int
    samples: list[tuple[float, int]]


@dataclass(slots=True)
class NotifyResult:
    """Deliveries to a local webhook receiver while alerts are written at a set rate."""

    store: str  # sqlite | postgresql
    dispatchers: str  # where the dispatcher ran
    channels: int
    batch_size: int
    concurrency: int
    target_alerts_per_s: float
    alerts: int
    alerts_per_s: float
    offered_deliveries_per_s: float
    seconds: float
    deliveries_per_s: float
    latency_ms: Latency
    outbox_depth: OutboxDepth
    correctness: DeliveryCorrectness
    processes: dict[str, ProcessUsage]
    # Deliveries per CPU-second of the process(es) that dispatched (embedded: the bench process, which
    # also writes the alerts): less sensitive to the machine's other load than deliveries/s.
    deliveries_per_cpu_second: float | None = None
    # The same receiver driven by a plain loop of the dispatcher's HTTP client library (aiohttp: one
    # session, a delivery's body, the dispatcher's concurrency) in the same run: the baseline.
    baseline_client: str = "aiohttp"
    baseline_requests: int = 0
    baseline_requests_per_s: float | None = None
    baseline_requests_per_cpu_second: float | None = None
    # The same loop with httpx (the client the senders used before), for reference.
    httpx_requests: int = 0
    httpx_requests_per_s: float | None = None
    httpx_requests_per_cpu_second: float | None = None


@dataclass(frozen=True, slots=True)
class Ratios:
    """The headline ratios against the baselines measured in the same run."""

    processed_vs_raw_broker: float | None = None
    processed_vs_naive: float | None = None
    upsert_vs_naive_insert: float | None = None
    deliveries_vs_client_loop: float | None = None


@dataclass(slots=True)
class BenchResult:
    mode: str
    machine_before: Machine
    options: dict[str, Any]
    pipeline: PipelineResult | None = None
    persistence: PersistenceResult | None = None
    api: ApiResult | None = None
    memory: MemoryResult | None = None
    ingest: IngestResult | None = None
    rules: RulesResult | None = None
    notify: NotifyResult | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    machine_after: Machine | None = None

    @property
    def ratios(self) -> Ratios:
        processed_vs_raw = processed_vs_naive = upsert = None
        if self.pipeline is not None:
            processed = self.pipeline.processed_per_s
            raw, naive = self.pipeline.baseline_raw_broker, self.pipeline.baseline_naive
            processed_vs_raw = processed / raw.events_per_s if raw and raw.events_per_s else None
            processed_vs_naive = processed / naive.events_per_s if naive and naive.events_per_s else None
        if self.persistence is not None and self.persistence.naive_alerts_per_s:
            upsert = self.persistence.alerts_per_s / self.persistence.naive_alerts_per_s
        deliveries = None
        if self.notify is not None and self.notify.baseline_requests_per_s:
            deliveries = self.notify.deliveries_per_s / self.notify.baseline_requests_per_s
        return Ratios(processed_vs_raw, processed_vs_naive, upsert, deliveries)

    @property
    def ok(self) -> bool:
        """False when the pipeline ran and its alerts were wrong, the rules scenario's alerts were, or
        deliveries were lost or repeated."""
        pipeline_ok = self.pipeline is None or self.pipeline.correctness.ok
        rules_ok = self.rules is None or self.rules.ok
        return pipeline_ok and rules_ok and (self.notify is None or self.notify.correctness.ok)

    def to_json(self) -> bytes:
        """The full document, scenarios that did not run left out, with the ratios."""
        document = {k: v for k, v in orjson.loads(orjson.dumps(self)).items() if v is not None}
        document["ratios"] = {k: v for k, v in orjson.loads(orjson.dumps(self.ratios)).items() if v is not None}
        return orjson.dumps(document, option=orjson.OPT_INDENT_2)
