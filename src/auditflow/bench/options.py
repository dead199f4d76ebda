"""What one `auditflow bench` run does: every option of the command, with its defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from auditflow.bench.deployment import Servers
from auditflow.bench.workload import DEFAULT_MIX, WorkloadSpec

Mode = Literal["embedded", "distributed"]
Scenario = Literal["pipeline", "persistence", "api", "memory"]

# With --duration and no --rate, this many events per second of duration are prepared; the run
# stops sending at the duration (or when they are used up).
ASAP_EVENTS_PER_S = 40_000


@dataclass(frozen=True)
class BenchOptions:
    mode: Mode = "embedded"
    scenarios: tuple[Scenario, ...] = ("pipeline",)
    rate: float = 0.0
    duration: float | None = None
    events: int = 100_000
    batch_size: int = 500
    concurrency: int = 4
    mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    users: int = 1000
    hosts: int = 50
    attack_share: float = 0.01
    seed: int = 1
    servers: Servers = field(default_factory=Servers)
    ingest: Literal["api", "broker"] = "api"
    analysis_replicas: int = 1
    generator_replicas: int = 1
    baselines: bool = True
    naive_events: int = 3000
    persist_alerts: int = 50_000
    store_batch: int = 1000
    writers: int = 2
    naive_alerts: int = 2000
    seed_alerts: int = 1_000_000
    api_requests: int = 200
    window_users: int = 100_000
    timeout: float = 30.0
    keep: bool = False

    def workload(self) -> WorkloadSpec:
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
