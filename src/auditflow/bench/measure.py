"""Measurement helpers without third-party dependencies: percentiles, and per-process RSS and CPU
read from /proc (psutil is not a dependency), sampled over a run."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from auditflow.bench.results import Machine, Percentiles, ProcessUsage

_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(ordered: Sequence[float], point: float) -> float | None:
    """Nearest-rank percentile of sorted values; None when there is nothing to rank."""
    if not ordered:
        return None
    return ordered[max(0, min(len(ordered) - 1, round(point / 100 * len(ordered) + 0.5) - 1))]


def percentiles(values: Sequence[float]) -> Percentiles:
    ordered = sorted(values)
    return Percentiles(percentile(ordered, 50), percentile(ordered, 95), percentile(ordered, 99))


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a process, from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a process, from /proc/<pid>/status."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def find_pids(name: str) -> list[int]:
    """Processes named `name` (to sample the shared servers: beam.smp, redis-server, postgres)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@dataclass
class ProcessStats:
    cpu_start: float | None = None
    cpu_end: float | None = None
    rss_peak: int = 0
    rss_last: int = 0

    def usage(self, seconds: float) -> ProcessUsage:
        cpu = None
        if self.cpu_start is not None and self.cpu_end is not None and seconds > 0:
            cpu = (self.cpu_end - self.cpu_start) / seconds
        return ProcessUsage(cpu, self.rss_peak / 2**20, self.rss_last / 2**20)


@dataclass
class Sampler:
    """Samples RSS and CPU of named processes and the depth of named queues every `interval` s.
    `processes` maps a label to pids (a service with replicas has several)."""

    processes: Mapping[str, Sequence[int]]
    depth: Callable[[], Awaitable[dict[str, int]]] | None = None
    interval: float = 0.5
    stats: dict[str, ProcessStats] = field(default_factory=dict)
    depths: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    _task: asyncio.Task[None] | None = None

    def _cpu(self, label: str) -> float | None:
        values = [cpu_seconds(pid) for pid in self.processes[label]]
        known = [v for v in values if v is not None]
        return sum(known) if known else None

    def _rss(self, label: str) -> int:
        return sum(r for r in (rss_bytes(pid) for pid in self.processes[label]) if r is not None)

    async def __aenter__(self) -> Sampler:
        self.started = time.monotonic()
        for label in self.processes:
            self.stats[label] = ProcessStats(cpu_start=self._cpu(label))
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.ended = time.monotonic()
        self._sample_processes()
        for label, stats in self.stats.items():
            stats.cpu_end = self._cpu(label)

    def _sample_processes(self) -> None:
        for label, stats in self.stats.items():
            rss = self._rss(label)
            stats.rss_last = rss
            stats.rss_peak = max(stats.rss_peak, rss)

    async def _run(self) -> None:
        while True:
            self._sample_processes()
            if self.depth is not None:
                try:
                    self.depths.append((time.monotonic() - self.started, await self.depth()))
                except Exception as exc:  # a failed sample must not end the run
                    self.depths.append((time.monotonic() - self.started, {"error": -1, str(exc)[:40]: -1}))
            await asyncio.sleep(self.interval)

    def usage(self) -> dict[str, ProcessUsage]:
        seconds = self.ended - self.started
        return {label: stats.usage(seconds) for label, stats in self.stats.items()}

    def queue_depths(self) -> list[dict[str, float]]:
        return [{"t": round(t, 2), **values} for t, values in self.depths]


def machine() -> Machine:
    """Cores, memory and load: every figure of a run is read against these."""
    total = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            total = int(line.split()[1]) * 1024
    return Machine(os.cpu_count(), round(total / 2**30, 1), list(os.getloadavg()))
