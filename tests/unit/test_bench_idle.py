"""The distributed bench target's idle check: it waits for every event to be analysed, but a run
whose missing events will never be analysed (dead-lettered) ends once the queues stay empty."""

from __future__ import annotations

from typing import Any

import pytest

from auditflow.bench import distributed
from auditflow.bench.distributed import DistributedTarget


class Probe(DistributedTarget):
    def __init__(self, analyzed: int, depth: int) -> None:  # no deployment: only idle() is exercised
        self.total_events = 100
        self._analyzed = (-1, 0.0)
        self.count, self.depth = analyzed, depth

    async def analyzed(self) -> int:
        return self.count

    async def depths(self) -> dict[str, Any]:
        return {"events": self.depth, "alerts": 0}


async def test_idle_once_every_event_is_analysed_and_the_queues_are_empty() -> None:
    assert await Probe(100, 0).idle()
    assert not await Probe(100, 3).idle()


async def test_missing_events_hold_the_run_until_the_count_stalls(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = Probe(90, 0)
    assert not await probe.idle()  # the count may still be moving
    monkeypatch.setattr(distributed, "STALL_S", 0.0)
    probe.depth = 5
    assert not await probe.idle()  # messages still queued: not stalled
    probe.depth = 0
    assert await probe.idle()  # empty queues, no movement: the 10 missing events will not come
    probe.count = 95
    monkeypatch.setattr(distributed, "STALL_S", 3600.0)
    assert not await probe.idle()  # the count moved again: wait
