"""The in-memory window state against a naive reference model, and its expiry and footprint."""

from __future__ import annotations

import tracemalloc
from dataclasses import dataclass, field

from hypothesis import given, settings

from auditflow.backends.state import Hit, WindowOp
from auditflow.backends.state.base import MAX_ENTRIES, MAX_SAMPLE_EVENTS
from auditflow.backends.state.memory import DEFAULT_GRACE_MS, MemoryWindowState
from tests.factories import op, op_batches

# (ts_ms, event_id, payload)
Event = tuple[int, str, bytes]


@dataclass
class RefKey:
    # event_id -> (ts, payload, steps, arrival number, distinct value)
    events: dict[str, tuple[int, bytes, frozenset[int], int, str | None]] = field(default_factory=dict)
    arrivals: int = 0
    alert: tuple[str, int, int, int] | None = None  # alert_id, occurrences, first_ms, last_ms
    evidence: list[str] = field(default_factory=list)  # the alert's events: opening ones, then repeats


class Reference:
    """The contract of base.py read literally: everything recomputed from the recorded events."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.keys: dict[tuple[str, str], RefKey] = {}
        self.max_entries = max_entries

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
            newest = max((v[0] for v in key.events.values()), default=one.ts_ms)
            key.arrivals += 1
            key.events[one.event_id] = (
                one.ts_ms, one.payload, frozenset(one.matched_steps), key.arrivals, one.distinct,
            )  # fmt: skip
            cutoff = min(one.ts_ms, newest) - one.window_ms
            key.events = {e: v for e, v in key.events.items() if v[0] >= cutoff}
            if newest > one.ts_ms and len(key.events) > self.max_entries:
                top = sorted(v[0] for v in key.events.values())[self.max_entries]
                key.events = {e: v for e, v in key.events.items() if v[0] < top}
                if one.ts_ms >= top:
                    continue
            found = self.contributing(key, one)
            if found is None:
                continue
            contributing, occurrences, last = found
            ts = one.ts_ms
            live = key.alert is not None and -one.suppress_ms - one.window_ms < ts - key.alert[3] < one.suppress_ms
            if one.suppress_ms > 0 and key.alert is not None and live:
                alert_id, repeats, first, last_hit = key.alert
                key.alert = (alert_id, repeats + 1, first, max(last_hit, ts))
                hits.append(Hit(index, alert_id, False, *key.alert[1:], [(one.event_id, one.payload)]))
                key.evidence.append(one.event_id)
                continue
            first = contributing[0][0]
            if one.suppress_ms > 0:
                key.alert = (one.new_alert_id, occurrences, first, last)
                key.evidence = [e for _, e, _ in contributing]
            events = [(e, p) for _, e, p in contributing[:MAX_SAMPLE_EVENTS]]
            hits.append(Hit(index, one.new_alert_id, True, occurrences, first, last, events))
        return hits

    @staticmethod
    def starts_before(key: RefKey, one: WindowOp) -> bool:
        return any(0 in v[2] and one.ts_ms - one.window_ms <= v[0] <= one.ts_ms for v in key.events.values())

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
    def contributing(key: RefKey, one: WindowOp) -> tuple[list[Event], int, int] | None:
        ts = one.ts_ms
        if one.kind == "match":
            return [(ts, one.event_id, one.payload)], 1, ts
        if one.kind == "threshold":  # the fullest window around ts, the earliest of equals
            best: tuple[int, list[Event]] | None = None
            for start in sorted({v[0] for v in key.events.values() if ts - one.window_ms <= v[0] <= ts}):
                inside = sorted(
                    (v[0], e, v[1], v[4]) for e, v in key.events.items() if start <= v[0] <= start + one.window_ms
                )
                if one.distinct is None:
                    size, picked = len(inside), [(t, e, p) for t, e, p, _ in inside]
                else:
                    firsts: dict[str | None, Event] = {}
                    for t, e, p, value in inside:
                        firsts.setdefault(value, (t, e, p))
                    size, picked = len(firsts), list(firsts.values())
                if best is None or size > best[0]:
                    best = (size, picked)
                    last = inside[-1][0]
            if best is None or best[0] < one.count:
                return None
            return best[1], best[0], last
        final = len(one.step_counts) - 1
        if final not in one.matched_steps:
            return None
        # Equal timestamps keep their arrival order.
        ordered = sorted((v[0], v[3], e, v[1], v[2]) for e, v in key.events.items() if v[0] <= ts)
        chain: list[Event] = []
        after = (ts - one.window_ms, -1)
        for step, need in enumerate(one.step_counts):
            found = [(t, n, e, p) for t, n, e, p, steps in ordered if (t, n) > after and step in steps]
            taken = found[:need] if step < final else found
            if len(taken) < need:
                return None
            chain += [(t, e, p) for t, _, e, p in taken]
            after = (taken[-1][0], taken[-1][1])
        return chain, len(chain), ts


@settings(max_examples=150, deadline=None)
@given(batches=op_batches())
async def test_memory_agrees_with_the_reference_model(batches: list[list[WindowOp]]) -> None:
    await agree(batches)


@settings(max_examples=300, deadline=None)
@given(batches=op_batches(("sequence",), focus=True))
async def test_memory_agrees_with_the_reference_model_on_sequences(batches: list[list[WindowOp]]) -> None:
    await agree(batches)


@settings(max_examples=300, deadline=None)
@given(batches=op_batches(adversarial=True))
async def test_memory_agrees_with_the_reference_model_on_far_timestamps(batches: list[list[WindowOp]]) -> None:
    await agree(batches, max_entries=6)


async def agree(batches: list[list[WindowOp]], max_entries: int = MAX_ENTRIES) -> None:
    memory = MemoryWindowState(max_entries=max_entries)
    reference = Reference(max_entries)
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
