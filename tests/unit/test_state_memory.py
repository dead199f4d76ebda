"""The in-memory window state against a naive reference model, and its expiry and footprint."""

from __future__ import annotations

import tracemalloc
from dataclasses import dataclass, field

from hypothesis import given, settings

from auditflow.backends.state import Hit, WindowOp
from auditflow.backends.state.base import MAX_SAMPLE_EVENTS
from auditflow.backends.state.memory import DEFAULT_GRACE_MS, MemoryWindowState
from tests.factories import op, op_batches

# (ts_ms, event_id, payload)
Event = tuple[int, str, bytes]


@dataclass
class RefKey:
    events: dict[str, tuple[int, bytes, frozenset[int]]] = field(default_factory=dict)
    alert: tuple[str, int, int, int] | None = None  # alert_id, occurrences, first_ms, last_ms
    evidence: list[str] = field(default_factory=list)  # the alert's events: opening ones, then repeats


class Reference:
    """The contract of base.py read literally: everything recomputed from the recorded events."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], RefKey] = {}

    def apply(self, ops: list[WindowOp]) -> list[Hit]:
        hits: list[Hit] = []
        for index, one in enumerate(ops):
            key = self.keys.setdefault((one.rule_id, one.group_key), RefKey())
            if one.event_id in key.events:
                replay = self.replay(key, index, one)
                if replay is not None:
                    hits.append(replay)
                continue
            if one.kind == "sequence" and 0 not in one.matched_steps and not self.starts_before(key, one):
                continue  # not recorded: no step-0 event precedes it in the window
            key.events[one.event_id] = (one.ts_ms, one.payload, frozenset(one.matched_steps))
            newest = max(ts for ts, _, _ in key.events.values())
            key.events = {e: v for e, v in key.events.items() if v[0] >= newest - one.window_ms}
            contributing = self.contributing(key, one)
            if contributing is None:
                continue
            ts = one.ts_ms
            if one.suppress_ms > 0 and key.alert is not None and ts - key.alert[3] < one.suppress_ms:
                alert_id, occurrences, first, last = key.alert
                key.alert = (alert_id, occurrences + 1, first, max(last, ts))
                hits.append(Hit(index, alert_id, False, *key.alert[1:], [(one.event_id, one.payload)]))
                key.evidence.append(one.event_id)
                continue
            first, last = contributing[0][0], max(t for t, _, _ in contributing)
            if one.suppress_ms > 0:
                key.alert = (one.new_alert_id, len(contributing), first, last)
                key.evidence = [e for _, e, _ in contributing]
            events = [(e, p) for _, e, p in contributing[:MAX_SAMPLE_EVENTS]]
            hits.append(Hit(index, one.new_alert_id, True, len(contributing), first, last, events))
        return hits

    @staticmethod
    def starts_before(key: RefKey, one: WindowOp) -> bool:
        return any(0 in steps and one.ts_ms - one.window_ms <= t < one.ts_ms for t, _, steps in key.events.values())

    @staticmethod
    def replay(key: RefKey, index: int, one: WindowOp) -> Hit | None:
        if one.suppress_ms <= 0 or key.alert is None or one.ts_ms - key.alert[3] >= one.suppress_ms:
            return None
        alert_id, occurrences, first, last = key.alert
        if one.kind == "match":
            events = [(one.event_id, one.payload)]
        else:
            attributed = dict.fromkeys(key.evidence[:MAX_SAMPLE_EVENTS])  # each once
            events = [(e, key.events[e][1]) for e in attributed if e in key.events]
        return Hit(index, alert_id, False, occurrences, first, last, events, replayed=True)

    @staticmethod
    def contributing(key: RefKey, one: WindowOp) -> list[Event] | None:
        ts = one.ts_ms
        if one.kind == "match":
            return [(ts, one.event_id, one.payload)]

        def candidates(step: int | None, after: int) -> list[Event]:
            return sorted(
                (t, e, p)
                for e, (t, p, steps) in key.events.items()
                if after < t <= ts and (step is None or step in steps)
            )

        if one.kind == "threshold":  # the earliest window around ts with enough events
            for start in sorted({t for t, _, _ in candidates(None, ts - one.window_ms - 1)}):
                in_window = sorted(
                    (t, e, p) for e, (t, p, _) in key.events.items() if start <= t <= start + one.window_ms
                )
                if len(in_window) >= one.count:
                    return in_window
            return None
        last = len(one.step_counts) - 1
        if last not in one.matched_steps:
            return None
        chain: list[Event] = []
        after = ts - one.window_ms - 1
        for step, need in enumerate(one.step_counts):
            found = candidates(step, after)
            taken = found[:need] if step < last else found
            if len(taken) < need:
                return None
            chain += taken
            after = taken[-1][0]
        return chain


@settings(max_examples=150, deadline=None)
@given(batches=op_batches())
async def test_memory_agrees_with_the_reference_model(batches: list[list[WindowOp]]) -> None:
    await agree(batches)


@settings(max_examples=300, deadline=None)
@given(batches=op_batches(("sequence",), focus=True))
async def test_memory_agrees_with_the_reference_model_on_sequences(batches: list[list[WindowOp]]) -> None:
    await agree(batches)


async def agree(batches: list[list[WindowOp]]) -> None:
    memory = MemoryWindowState()
    reference = Reference()
    for batch in batches:
        assert await memory.apply(batch) == reference.apply(batch)


class Clock:
    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


async def test_keys_expire_after_their_period_plus_grace_of_wall_clock_time() -> None:
    clock = Clock()
    state = MemoryWindowState(clock=clock)
    ttl_s = (5_000 + DEFAULT_GRACE_MS) / 1000  # suppression outlasts the window here
    assert len(await state.apply([op("match", "e1", 0, window=1_000, suppress=5_000)])) == 1
    clock.seconds = ttl_s - 0.1
    await state.apply([op("match", "x1", 0, group="other")])
    assert len(state) == 2
    replay = await state.apply([op("match", "e1", 0, window=1_000, suppress=5_000)])
    assert [(h.alert_id, h.replayed) for h in replay] == [("alert-e1", True)]  # and no refresh
    clock.seconds = ttl_s + 1
    hits = await state.apply([op("match", "e1", 0, window=1_000, suppress=5_000)])
    assert [(h.alert_id, h.new) for h in hits] == [("alert-e1", True)]  # forgotten, so new again
    assert len(state) == 2  # "other" was touched later and lives on


async def test_a_longer_window_moves_the_key_to_a_longer_lifetime() -> None:
    clock = Clock()
    state = MemoryWindowState(clock=clock, grace_ms=0)
    await state.apply([op("threshold", "e1", 0, window=1_000, suppress=0, count=5)])
    await state.apply([op("threshold", "e2", 1, window=10_000, suppress=0, count=5)])
    clock.seconds = 5
    await state.apply([op("match", "x", 0, group="other")])
    assert len(state) == 2
    clock.seconds = 11
    await state.apply([op("match", "y", 0, group="other")])
    assert len(state) == 1


async def test_memory_stays_bounded_by_the_live_keys() -> None:
    clock = Clock()
    state = MemoryWindowState(clock=clock)
    await state.apply([op("threshold", f"e{g}", g, group=f"user{g}", count=3) for g in range(10_000)])
    assert len(state) == 10_000
    clock.seconds = 1_000
    await state.apply([op("threshold", "late", 0, group="user1", count=3)])
    assert len(state) == 1


async def test_open_windows_take_well_under_a_kilobyte_per_group() -> None:
    payload = b'{"event_type":"user_login","user_id":"alice","server_hostname":"web-01","details":{}}' * 3
    ops = [
        WindowOp("failed-login", f"user{g}\x1fhost{g}", "threshold", f"{g:08x}-0000-4000-8000-000000000000",
                 1_700_000_000_000 + g, payload, 60_000, 300_000, f"alert-{g}", count=3)
        for g in range(20_000)
    ]  # fmt: skip
    state = MemoryWindowState()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for start in range(0, len(ops), 500):
            await state.apply(ops[start : start + 500])
        per_group = (tracemalloc.get_traced_memory()[0] - before) / len(ops)
    finally:
        tracemalloc.stop()
    assert len(state) == 20_000
    assert per_group < 800  # besides the payload and key strings, shared with the ops here


async def test_lifecycle_is_trivial() -> None:
    async with MemoryWindowState() as state:
        await state.ping()
        assert await state.apply([]) == []
