"""The window-state contract against hostile timestamps: no single event may disable a window for
the others, stop its sliding or expiry, or grow a key without bound."""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditflow.backends.state import Hit, WindowOp, WindowState
from auditflow.backends.state.memory import DEFAULT_GRACE_MS, MemoryWindowState
from tests.clusters.redis_cluster import RedisClusterProcesses
from tests.conftest import REDIS_URL, require_server
from tests.contract.state.ops import Backend, apply_each, fired
from tests.factories import FAR_TIMESTAMPS, op

NOW = 1_767_225_600_000  # 2026-01-01
YEAR_9999 = 253_370_764_800_000  # 9999-01-01


def failure(event_id: str, ts: int, group: str = "alice@web-1") -> WindowOp:
    return op("threshold", event_id, ts, group=group, window=60_000, count=3)


async def test_a_failure_dated_9999_does_not_blind_the_failures_after_it(state: WindowState) -> None:
    ops = [failure("future", YEAR_9999)] + [failure(f"f{i}", NOW + i * 1_000) for i in range(12)]
    results = await apply_each(state, ops)
    assert fired(results) == [False, False, False] + [True] * 10
    opened = results[3]
    assert opened is not None
    assert (opened.new, opened.occurrences, [e for e, _ in opened.events]) == (True, 3, ["f0", "f1", "f2"])
    assert (opened.first_seen_ms, opened.last_seen_ms) == (NOW, NOW + 2_000)


async def test_a_far_event_pushes_no_earlier_event_out_of_its_window(state: WindowState) -> None:
    for far in (YEAR_9999, 0, -62_135_596_800_000):
        group = f"g{far}"
        ops = [failure("a", NOW, group), failure("b", NOW + 1, group), failure("far", far, group)]
        ops.append(failure("c", NOW + 2, group))
        hits = await state.apply(ops)
        assert [(h.op_index, [e for e, _ in h.events]) for h in hits] == [(3, ["a", "b", "c"])], far


async def test_the_window_still_slides_after_a_far_event(state: WindowState) -> None:
    # Events spread wider than the window never fire, far event or not: old ones still go.
    ops = [failure("future", YEAR_9999)] + [failure(f"f{i}", NOW + i * 40_000) for i in range(10)]
    assert not any(fired(await apply_each(state, ops)))


async def test_a_key_holds_at_most_max_entries(backend: Backend) -> None:
    # Far-future events in descending order: each is older than the newest, none is slid out.
    state = await backend.state(max_entries=50)
    try:
        flood = [failure(f"x{i}", YEAR_9999 - i * 3_600_000) for i in range(400)]
        for start in range(0, len(flood), 100):
            await state.apply(flood[start : start + 100])
        assert await held(backend, state) <= 50
        # The real failures after the flood still fire.
        hits = await state.apply([failure(f"f{i}", NOW + i) for i in range(3)])
        assert [(h.op_index, h.new) for h in hits] == [(2, True)]
    finally:
        await state.aclose()


async def held(backend: Backend, state: WindowState) -> int:
    """The number of entries of the one key the flood wrote."""
    if isinstance(state, MemoryWindowState):
        return sum(len(window.entries) for window in state._windows.values())
    async with backend.client() as client:
        size = int(await client.zcard(backend.key("w", "r1", "alice@web-1")))
        assert await client.hlen(backend.key("p", "r1", "alice@web-1")) == size
        return size


async def test_a_far_event_does_not_extend_the_expiry_of_its_key(shared_backend: Backend) -> None:
    state = await shared_backend.state()
    await state.apply([failure("now", NOW), failure("future", YEAR_9999)])
    keys = await shared_backend.keys()
    async with shared_backend.client() as client:
        ttls = [await client.pttl(key) for key in keys]
    assert keys
    assert all(0 < ttl <= 60_000 + DEFAULT_GRACE_MS for ttl in ttls), ttls


@st.composite
def streams_with_one_far_event(draw: st.DrawFn) -> tuple[list[WindowOp], int, WindowOp]:
    """Threshold and sequence ops of one group in time order (ties included), and one event dated
    far away to insert at some position."""
    window = draw(st.sampled_from([5, 30]))
    count = draw(st.integers(2, 4))
    steps = tuple(draw(st.lists(st.integers(1, 2), min_size=2, max_size=3)))
    ops: list[WindowOp] = []
    ts = NOW
    for i in range(draw(st.integers(1, 50))):
        ts += draw(st.integers(0, 12))
        if draw(st.booleans()):
            ops.append(op("threshold", f"e{i}", ts, rule="t", window=window, count=count))
        else:
            matched = tuple(sorted(draw(st.sets(st.integers(0, len(steps) - 1), min_size=1))))
            ops.append(op("sequence", f"e{i}", ts, rule="s", window=window, steps=steps, matched=matched))
    far_ts = draw(st.sampled_from(FAR_TIMESTAMPS))
    kind = draw(st.sampled_from(["t", "s"]))
    if kind == "t":
        far = op("threshold", "far", far_ts, rule="t", window=window, count=count)
    else:
        far = op("sequence", "far", far_ts, rule="s", window=window, steps=steps, matched=(0,))
    return ops, draw(st.integers(0, len(ops))), far


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=streams_with_one_far_event(), kind=st.sampled_from(["memory", "redis", "cluster"]))
async def test_one_far_event_changes_no_hit_of_the_others(
    unique_name: str, redis_cluster: RedisClusterProcesses, case: tuple[list[WindowOp], int, WindowOp], kind: str
) -> None:
    ops, at, far = case

    async def run(stream: list[WindowOp]) -> list[Hit]:
        if kind == "redis":
            require_server("redis")
        backend = Backend(
            kind, f"{unique_name}:{uuid.uuid4().hex[:12]}:", redis_cluster.url if kind == "cluster" else REDIS_URL
        )
        state = await backend.state(**({"max_entries": 20_000} if kind == "memory" else {}))
        try:
            hits = []
            for start in range(0, len(stream), 7):
                batch = stream[start : start + 7]
                hits += [(batch[h.op_index].event_id, h) for h in await state.apply(batch)]
        finally:
            await backend.aclose()
            if kind == "redis":
                await backend.clean()
        return [h for event_id, h in hits if event_id != "far"]

    without = await run(ops)
    with_far = await run([*ops[:at], far, *ops[at:]])
    assert [strip(h) for h in with_far] == [strip(h) for h in without]


def strip(hit: Hit) -> tuple[object, ...]:
    """A hit without its op index, which the inserted event shifts."""
    return hit.alert_id, hit.new, hit.occurrences, hit.first_seen_ms, hit.last_seen_ms, hit.events, hit.replayed


async def test_an_alert_dated_9999_does_not_absorb_the_alerts_after_it(state: WindowState) -> None:
    root = [op("match", "future", YEAR_9999, suppress=300_000), op("match", "now", NOW, suppress=300_000)]
    root.append(op("match", "later", NOW + 1_000, suppress=300_000))
    hits = await state.apply(root)
    assert [(h.alert_id, h.new, h.occurrences, h.last_seen_ms) for h in hits] == [
        ("alert-future", True, 1, YEAR_9999),
        ("alert-now", True, 1, NOW),
        ("alert-now", False, 2, NOW + 1_000),
    ]
    # A late event within the window of a live alert is still one more occurrence of it.
    late = await state.apply([op("match", "late", NOW - 500, suppress=300_000)])
    assert [(h.alert_id, h.new, h.occurrences) for h in late] == [("alert-now", False, 3)]
