"""The window-state contract (auditflow.backends.state.base), one suite run against every backend."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings

from auditflow.backends.state import Hit, WindowOp, WindowState, create_state
from auditflow.backends.state.base import MAX_SAMPLE_EVENTS
from auditflow.backends.state.memory import DEFAULT_GRACE_MS, MemoryWindowState
from auditflow.backends.state.redis import RedisWindowState, window_key
from auditflow.errors import BackendError, BackendUnavailable
from tests.conftest import REDIS_URL, require_server
from tests.factories import op, op_batches


class Backend:
    """Hands out started states that share one backend: the same instance for memory, new
    clients on one key prefix for Redis (as separate analysis replicas would be)."""

    def __init__(self, kind: str, prefix: str) -> None:
        self.kind = kind
        self.prefix = prefix
        self._states: list[WindowState] = []
        self._memory = MemoryWindowState("memory://", key_prefix=prefix)

    async def state(self) -> WindowState:
        if self.kind == "memory":
            return self._memory
        state = RedisWindowState(REDIS_URL, key_prefix=self.prefix)
        await state.start()
        self._states.append(state)
        return state

    async def aclose(self) -> None:
        for state in self._states:
            await state.aclose()


@pytest.fixture
async def memory_backend(unique_name: str) -> AsyncIterator[Backend]:
    backend = Backend("memory", f"{unique_name}:")
    yield backend
    await backend.aclose()


@pytest.fixture
async def redis_backend(unique_name: str) -> AsyncIterator[Backend]:
    require_server("redis")
    backend = Backend("redis", f"{unique_name}:")
    yield backend
    await backend.aclose()
    client = aioredis.Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(match=f"{unique_name}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Backend:
    result: Backend = request.getfixturevalue(f"{request.param}_backend")
    return result


@pytest.fixture
async def state(backend: Backend) -> WindowState:
    return await backend.state()


async def apply_each(state: WindowState, ops: Sequence[WindowOp]) -> list[Hit | None]:
    """Apply ops one batch each; the hit of each op, or None."""
    results: list[Hit | None] = []
    for one in ops:
        hits = await state.apply([one])
        results.append(hits[0] if hits else None)
    return results


def fired(results: Sequence[Hit | None]) -> list[bool]:
    return [hit is not None for hit in results]


async def test_match_fires_every_time_and_suppresses_into_one_alert(state: WindowState) -> None:
    hits = await state.apply([op("match", f"e{i}", 1_000 + i) for i in range(4)])
    assert [(h.op_index, h.alert_id, h.new, h.occurrences) for h in hits] == [
        (0, "alert-e0", True, 1),
        (1, "alert-e0", False, 2),
        (2, "alert-e0", False, 3),
        (3, "alert-e0", False, 4),
    ]
    assert hits[0].events == [("e0", b"payload-e0")]
    assert hits[3].events == [("e3", b"payload-e3")]
    assert (hits[3].first_seen_ms, hits[3].last_seen_ms) == (1_000, 1_003)


async def test_threshold_counts_events_exactly_window_apart(state: WindowState) -> None:
    edge = await apply_each(state, [op("threshold", f"a{i}", ts, count=3) for i, ts in enumerate([0, 500, 1_000])])
    assert fired(edge) == [False, False, True]
    assert edge[2] is not None
    assert (edge[2].occurrences, edge[2].first_seen_ms, edge[2].last_seen_ms) == (3, 0, 1_000)
    late = [op("threshold", f"b{i}", ts, group="g2", count=3) for i, ts in enumerate([0, 500, 1_001])]
    assert fired(await apply_each(state, late)) == [False, False, False]


async def test_threshold_window_slides_instead_of_using_buckets(state: WindowState) -> None:
    # 900, 1100 and 1800 straddle a 1-second bucket boundary but lie within one sliding second.
    across = [op("threshold", f"a{i}", ts, count=3) for i, ts in enumerate([900, 1_100, 1_800])]
    assert fired(await apply_each(state, across)) == [False, False, True]
    # Evenly spread events never have three within one second.
    spread = [op("threshold", f"b{i}", i * 600, group="g2", count=3) for i in range(6)]
    assert not any(fired(await apply_each(state, spread)))


async def test_groups_and_rules_are_isolated(state: WindowState) -> None:
    ops = [
        op("threshold", "a", 0, count=2, group="g1"),
        op("threshold", "b", 1, count=2, group="g2"),
        op("threshold", "c", 2, count=2, group="g1", rule="r2"),
        op("threshold", "d", 3, count=2, group="g1:r2"),  # separators inside a group key do not collide
        op("threshold", "e", 4, count=2, group="g1"),
    ]
    hits = await state.apply(ops)
    assert [(h.op_index, h.events) for h in hits] == [(4, [("a", b"payload-a"), ("e", b"payload-e")])]


async def test_out_of_order_events_join_the_window_in_time_order(state: WindowState) -> None:
    ops = [op("threshold", eid, ts, count=3) for eid, ts in [("e1", 1_000), ("e2", 2_000), ("e3", 1_500)]]
    hits = await state.apply(ops)  # e3 came late, but e1, e3 and e2 lie within one second
    assert [(h.op_index, h.new, h.occurrences, h.first_seen_ms, h.last_seen_ms) for h in hits] == [
        (2, True, 3, 1_000, 2_000)
    ]
    assert [e for e, _ in hits[0].events] == ["e1", "e3", "e2"]
    hits = await state.apply([op("threshold", "e4", 2_100, count=3)])
    assert [(h.new, h.occurrences, h.events) for h in hits] == [(False, 4, [("e4", b"payload-e4")])]
    # Older than the newest event minus the window: dropped, it neither fires nor counts.
    assert await state.apply([op("threshold", "e0", 100, count=3)]) == []
    hits = await state.apply([op("threshold", "e5", 2_200, count=3)])
    assert [(h.new, h.occurrences) for h in hits] == [(False, 5)]


async def test_a_late_threshold_event_fires_when_any_window_around_it_holds_count(state: WindowState) -> None:
    def late(group: str, count: int, times: list[tuple[str, int]]) -> list[WindowOp]:
        return [op("threshold", eid, ts, group=group, window=60, count=count) for eid, ts in times]

    hits = await state.apply(late("a", 3, [("e10", 10), ("e20", 20), ("e5", 5)]))
    # Its last seen is the newest event of the burst, not the late one.
    assert [(h.op_index, h.occurrences, h.first_seen_ms, h.last_seen_ms) for h in hits] == [(2, 3, 5, 20)]
    assert [e for e, _ in hits[0].events] == ["e5", "e10", "e20"]
    # Around 50, [0, 60] and [50, 110] hold two events each (0 left the window when 100 came).
    assert await state.apply(late("b", 3, [("e0", 0), ("e100", 100), ("e50", 50)])) == []
    assert [h.op_index for h in await state.apply(late("c", 2, [("e0", 0), ("e100", 100), ("e50", 50)]))] == [2]


async def test_redelivered_event_adds_no_occurrence(state: WindowState) -> None:
    first = [op("threshold", "e1", 0, count=2), op("threshold", "e1", 0, count=2)]
    assert await state.apply(first) == []  # no alert yet: a duplicate yields nothing
    hits = await state.apply([op("threshold", "e2", 10, count=2), op("threshold", "e1", 0, count=2)])
    assert [(h.op_index, h.new, h.replayed, h.occurrences) for h in hits] == [(0, True, False, 2), (1, False, True, 2)]
    hits = await state.apply([op("threshold", "e2", 10, count=2)])
    assert [(h.alert_id, h.replayed, h.occurrences) for h in hits] == [("alert-e2", True, 2)]
    matches = await state.apply([op("match", "m1", 5, rule="m"), op("match", "m1", 5, rule="m")])
    assert [(h.new, h.replayed, h.occurrences) for h in matches] == [(True, False, 1), (False, True, 1)]
    hits = await state.apply([op("threshold", "e3", 20, count=2)])
    assert [(h.new, h.replayed, h.occurrences) for h in hits] == [(False, False, 3)]


async def test_suppression_expires_after_suppress_ms_of_event_time(state: WindowState) -> None:
    ops = [op("match", f"e{i}", ts, suppress=1_000) for i, ts in enumerate([0, 999, 1_998, 2_998])]
    hits = await state.apply(ops)
    assert [(h.alert_id, h.new, h.occurrences) for h in hits] == [
        ("alert-e0", True, 1),
        ("alert-e0", False, 2),
        ("alert-e0", False, 3),  # measured from the last hit, not the first
        ("alert-e3", True, 1),
    ]
    assert (hits[2].first_seen_ms, hits[2].last_seen_ms) == (0, 1_998)


async def test_zero_suppression_opens_an_alert_on_every_firing(state: WindowState) -> None:
    hits = await state.apply([op("threshold", f"e{i}", i, count=2, suppress=0) for i in range(4)])
    assert [(h.alert_id, h.new, h.occurrences) for h in hits] == [
        ("alert-e1", True, 2),
        ("alert-e2", True, 3),
        ("alert-e3", True, 4),
    ]


def seq(event_id: str, ts: int, matched: tuple[int, ...], group: str = "g1") -> WindowOp:
    """A two-step sequence op: two events of step 0, then one of step 1."""
    return op("sequence", event_id, ts, group=group, steps=(2, 1), matched=matched)


async def test_sequence_fires_only_for_steps_in_order(state: WindowState) -> None:
    wrong = [seq("s1", 0, (1,)), seq("f1", 10, (0,)), seq("f2", 20, (0,))]
    assert fired(await apply_each(state, wrong)) == [False, False, False]
    hits = await state.apply([seq("s2", 30, (1,))])
    assert [(h.occurrences, h.first_seen_ms, [e for e, _ in h.events]) for h in hits] == [(3, 10, ["f1", "f2", "s2"])]


async def test_sequence_needs_each_step_count_within_the_window(state: WindowState) -> None:
    short = [seq("f1", 0, (0,), group="one"), seq("s1", 10, (1,), group="one")]
    assert fired(await apply_each(state, short)) == [False, False]
    stale = [seq("f1", 0, (0,), group="old"), seq("f2", 100, (0,), group="old"), seq("s1", 1_001, (1,), group="old")]
    assert fired(await apply_each(state, stale)) == [False, False, False]
    edge = [seq("f1", 1, (0,), group="edge"), seq("f2", 100, (0,), group="edge"), seq("s1", 1_001, (1,), group="edge")]
    assert fired(await apply_each(state, edge)) == [False, False, True]


async def test_sequence_next_step_starts_after_the_previous_in_arrival_order(state: WindowState) -> None:
    # s1 shares f2's timestamp but arrived before it: it cannot follow step 0; s2, arriving
    # after f2 with that same timestamp, does.
    ops = [seq("f1", 0, (0,)), seq("s1", 100, (1,)), seq("f2", 100, (0,)), seq("s2", 100, (1,))]
    results = await apply_each(state, ops)
    assert fired(results) == [False, False, False, True]
    assert results[3] is not None
    assert [e for e, _ in results[3].events] == ["f1", "f2", "s2"]


async def stored(backend: Backend) -> dict[bytes, bytes | None] | int:
    """What the backend holds: every key under the prefix with its value (Redis), the number of
    keys (memory)."""
    if backend.kind == "memory":
        return len(backend._memory)
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{backend.prefix}*", count=1000)]
        return {key: await client.dump(key) for key in sorted(keys)}
    finally:
        await client.aclose()


async def test_a_later_step_with_no_step_0_before_it_records_nothing(backend: Backend, state: WindowState) -> None:
    # Successes for a group without failures: the common case, and nothing is written for them.
    assert await state.apply([seq("s1", 100, (1,)), seq("s2", 200, (1,), group="g2")]) == []
    assert await stored(backend) in (0, {})
    assert await state.apply([seq("s1", 100, (1,))]) == []  # redelivered: still nothing
    assert await stored(backend) in (0, {})
    # Step-0 events exist, but none in [ts - window, ts]: too old or later.
    await state.apply([seq("f1", 0, (0,)), seq("f2", 1_500, (0,)), seq("f3", 1_700, (0,))])
    before = await stored(backend)
    assert await state.apply([seq("s4", 1_499, (1,)), seq("s5", 3_000, (1,))]) == []
    assert await stored(backend) == before


async def test_failures_then_a_success_still_fire(state: WindowState) -> None:
    ops = [seq("s0", 5, (1,)), seq("f1", 10, (0,)), seq("f2", 20, (0,)), seq("s1", 30, (1,)), seq("s2", 40, (1,))]
    hits = await state.apply(ops)
    # s0 came before any failure and is not part of the chain; s2 is one more occurrence.
    assert [(h.op_index, h.new, h.occurrences, [e for e, _ in h.events]) for h in hits] == [
        (3, True, 3, ["f1", "f2", "s1"]),
        (4, False, 4, ["s2"]),
    ]


async def test_a_step_before_its_earlier_step_0_arrives_is_not_seen(state: WindowState) -> None:
    # The documented limitation: m (step 1) arrives before f (step 0), which is older, so m was not
    # recorded and the chain f, m, last is not found.
    def three(event_id: str, ts: int, matched: tuple[int, ...]) -> WindowOp:
        return op("sequence", event_id, ts, steps=(1, 1, 1), matched=matched)

    assert await state.apply([three("m", 100, (1,)), three("f", 50, (0,)), three("l1", 150, (2,))]) == []
    # Redelivered after f arrived, m is evaluated afresh and recorded: the next last step fires
    # (l1, recorded as f preceded it, is part of the last step).
    assert await state.apply([three("m", 100, (1,))]) == []
    hits = await state.apply([three("l2", 160, (2,))])
    assert [(h.new, [e for e, _ in h.events]) for h in hits] == [(True, ["f", "m", "l1", "l2"])]
    # In a two-step rule a late first step still completes a chain, without the success before it.
    late = [seq("s1", 100, (1,), group="g2"), seq("f1", 10, (0,), group="g2"), seq("f2", 20, (0,), group="g2")]
    assert await state.apply(late) == []
    hits = await state.apply([seq("s2", 200, (1,), group="g2")])
    assert [(h.occurrences, [e for e, _ in h.events]) for h in hits] == [(3, ["f1", "f2", "s2"])]


async def test_a_redelivery_replays_the_live_alert_once_step_0_left_the_window(state: WindowState) -> None:
    ops = [op("sequence", eid, ts, window=100, steps=(2, 1), matched=m) for eid, ts, m in [
        ("f1", 0, (0,)), ("f2", 10, (0,)), ("s1", 60, (1,)), ("f3", 140, (0,)), ("f4", 150, (0,))
    ]]  # fmt: skip
    hits = await state.apply(ops)  # f4 slides the window (from f3) past f1 and f2; s1 is still held
    assert [(h.op_index, h.alert_id) for h in hits] == [(2, "alert-s1")]
    # s1 again: no step-0 event lies in [s1 - window, s1) any more, but it is a recorded event.
    replays = await state.apply([ops[2]])
    assert [(h.alert_id, h.replayed, h.occurrences, [e for e, _ in h.events]) for h in replays] == [
        ("alert-s1", True, 3, ["s1"])
    ]
    # A success that was not recorded produced no alert: its redelivery replays nothing.
    quiet = op("sequence", "s2", 300, window=100, steps=(2, 1), matched=(1,))
    assert await state.apply([quiet]) == []
    assert await state.apply([quiet]) == []


async def test_sample_events_are_capped_oldest_first(state: WindowState) -> None:
    payloads = [bytes([i, 0, 255]) + b"\n'\"{}" for i in range(30)]
    ops = [
        WindowOp("r1", "g\x00\n'", "threshold", f"e{i:02}", 1_000 + i, payloads[i], 60_000, 60_000, f"a{i}", count=25)
        for i in range(30)
    ]
    hits = await state.apply(ops)
    assert [h.occurrences for h in hits] == list(range(25, 31))
    assert hits[0].events == [(f"e{i:02}", payloads[i]) for i in range(MAX_SAMPLE_EVENTS)]
    assert hits[1].events == [("e25", payloads[25])]
    replays = await state.apply(ops)
    assert len(replays) == 30
    assert all(h.replayed and h.occurrences == 30 and h.events == hits[0].events for h in replays)


async def test_a_batch_applied_again_replays_its_alerts_unchanged(state: WindowState) -> None:
    # As after a crash between applying a batch and publishing its alerts: the broker redelivers it.
    batch = [
        op("threshold", "t1", 100, rule="t", count=2),
        op("threshold", "t2", 200, rule="t", count=2),
        op("threshold", "t3", 300, rule="t", count=2),
        op("match", "m1", 250, rule="m"),
        seq("f1", 100, (0,)),
        seq("f2", 150, (0,)),
        seq("s1", 400, (1,)),
        op("threshold", "quiet", 100, rule="t", group="g2", count=2),
    ]
    first = await state.apply(batch)
    again = await state.apply(batch)
    opened = {h.alert_id for h in first if h.new}
    assert opened == {"alert-m1", "alert-s1", "alert-t2"}
    assert all(h.replayed and not h.new for h in again)
    assert {h.alert_id for h in again} == opened
    latest = {h.alert_id: h for h in first}  # the last hit of each alert in the first pass
    for hit in again:
        before = latest[hit.alert_id]
        assert (hit.occurrences, hit.first_seen_ms, hit.last_seen_ms) == (
            before.occurrences, before.first_seen_ms, before.last_seen_ms
        )  # fmt: skip
    assert [(h.op_index, h.events) for h in again if h.alert_id == "alert-t2"] == [
        (i, [(e, f"payload-{e}".encode()) for e in ("t1", "t2", "t3")]) for i in range(3)
    ]
    assert [h.events for h in again if h.alert_id == "alert-m1"] == [[("m1", b"payload-m1")]]
    assert [[e for e, _ in h.events] for h in again if h.alert_id == "alert-s1"] == [["f1", "f2", "s1"]] * 3
    # Nothing changed: the next event is one more occurrence of the same alert.
    hits = await state.apply([op("threshold", "t4", 350, rule="t", count=2)])
    assert [(h.alert_id, h.new, h.occurrences) for h in hits] == [("alert-t2", False, 4)]


async def test_a_redelivered_event_without_a_live_alert_yields_nothing(state: WindowState) -> None:
    unsuppressed = [op("threshold", f"a{i}", i, count=2, suppress=0) for i in range(2)]
    assert [h.alert_id for h in await state.apply(unsuppressed)] == ["alert-a1"]
    assert await state.apply(unsuppressed) == []  # replay needs suppression: no alert is remembered
    quiet = [op("threshold", "b1", 0, group="g2", count=2)]
    assert await state.apply(quiet) == []
    assert await state.apply(quiet) == []
    # t3 comes after the alert's suppression period and fires nothing: its redelivery neither.
    later = [op("threshold", f"t{i}", ts, group="g3", window=100, suppress=100, count=2) for i, ts in [(1, 0), (2, 5)]]
    assert [h.alert_id for h in await state.apply(later)] == ["alert-t2"]
    t3 = op("threshold", "t3", 500, group="g3", window=100, suppress=100, count=2)
    assert await state.apply([t3]) == []
    assert await state.apply([t3]) == []


async def test_a_replay_names_the_current_alert_of_its_key(state: WindowState) -> None:
    ops = [op("match", "m1", 0, suppress=100), op("match", "m2", 200, suppress=100)]
    assert [(h.alert_id, h.new) for h in await state.apply(ops)] == [("alert-m1", True), ("alert-m2", True)]
    hits = await state.apply(ops)
    assert [(h.alert_id, h.replayed, h.occurrences, h.events) for h in hits] == [
        ("alert-m2", True, 1, [("m1", b"payload-m1")]),  # alert-m1 has been replaced: not replayed
        ("alert-m2", True, 1, [("m2", b"payload-m2")]),
    ]


async def test_a_replay_carries_no_events_once_the_window_dropped_them(state: WindowState) -> None:
    ops = [op("threshold", f"e{i}", ts, window=10, count=2) for i, ts in enumerate([0, 5, 100, 120])]
    assert [h.op_index for h in await state.apply(ops[:2])] == [1]
    # In one batch: a replay, then two events that slide the window past the alert's events (not
    # part of the alert, but within its suppression period), then the first of them again.
    hits = await state.apply([ops[1], ops[2], ops[3], ops[2]])
    assert [(h.op_index, h.alert_id, h.replayed, h.occurrences, [e for e, _ in h.events]) for h in hits] == [
        (0, "alert-e1", True, 2, ["e0", "e1"]),
        (3, "alert-e1", True, 2, []),
    ]


async def test_concurrent_replicas_open_exactly_one_alert_per_group(backend: Backend) -> None:
    replicas = [await backend.state() for _ in range(4)]
    # One timestamp per group, so every group fires on its third distinct event whatever the order.
    ops = [op("threshold", f"g{g}-e{i}", g, group=f"user{g}", count=3) for g in range(200) for i in range(5)]
    ops += ops[::7]  # redeliveries, possibly to another replica
    random.Random(7).shuffle(ops)
    batches = [ops[i : i + 50] for i in range(0, len(ops), 50)]

    async def replica(index: int) -> list[tuple[Hit, WindowOp]]:
        out: list[tuple[Hit, WindowOp]] = []
        for batch in batches[index :: len(replicas)]:
            out += [(hit, batch[hit.op_index]) for hit in await replicas[index].apply(batch)]
            await asyncio.sleep(0)  # let the other replicas interleave
        return out

    results = [pair for part in await asyncio.gather(*(replica(i) for i in range(4))) for pair in part]
    per_group: dict[str, list[tuple[bool, int]]] = {}
    replayed: dict[str, list[int]] = {}
    alert_ids: dict[str, set[str]] = {}
    for hit, fired_op in results:
        if hit.replayed:  # a redelivery after the group's alert opened names it again, unchanged
            replayed.setdefault(fired_op.group_key, []).append(hit.occurrences)
        else:
            per_group.setdefault(fired_op.group_key, []).append((hit.new, hit.occurrences))
        alert_ids.setdefault(fired_op.group_key, set()).add(hit.alert_id)
    assert len(per_group) == 200
    for group, group_hits in per_group.items():
        assert sorted(group_hits) == [(False, 4), (False, 5), (True, 3)], group
        assert len(alert_ids[group]) == 1
        assert set(replayed.get(group, [])) <= {3, 4, 5}
    assert replayed  # with 1 in 7 events delivered twice, some come after their group's alert


async def test_unreachable_redis_raises_backend_unavailable() -> None:
    async with RedisWindowState("redis://127.0.0.1:1/0", key_prefix="unused:") as state:
        with pytest.raises(BackendUnavailable):
            await state.ping()
        with pytest.raises(BackendUnavailable):
            await state.apply([op("match", "e1", 0)])


async def test_redis_error_reply_raises_backend_error(redis_backend: Backend) -> None:
    state = await redis_backend.state()
    await state.ping()
    client = aioredis.Redis.from_url(REDIS_URL)
    await client.set(f"{redis_backend.prefix}w:{window_key('r1', 'g1')}", b"not a sorted set")
    await client.aclose()
    with pytest.raises(BackendError):
        await state.apply([op("match", "e1", 0)])


async def test_redis_script_is_loaded_again_after_noscript(redis_backend: Backend) -> None:
    state = await redis_backend.state()
    assert isinstance(state, RedisWindowState)
    script = state._script
    assert script is not None
    script.sha = "0" * 40  # as if the server had lost its script cache
    assert len(await state.apply([op("match", "e1", 0)])) == 1


async def test_ping_succeeds_on_a_reachable_backend(state: WindowState) -> None:
    await state.ping()


async def test_every_redis_key_expires(redis_backend: Backend) -> None:
    state = await redis_backend.state()
    await state.apply(
        [
            op("match", "m1", 0, rule="m", window=1_000, suppress=5_000),
            op("threshold", "t1", 0, rule="t", window=2_000, suppress=0, count=1),
            seq("s1", 0, (0,)),
            seq("s2", 1, (0, 1)),
            seq("s3", 2, (1,)),
        ]
    )
    client = aioredis.Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(match=f"{redis_backend.prefix}*", count=1000)]
    ttls = [(key.decode().removeprefix(redis_backend.prefix).split(":", 1)[0], await client.pttl(key)) for key in keys]
    await client.aclose()
    assert sorted({kind for kind, _ in ttls}) == ["a", "p", "s0", "s1", "w"]
    assert len(ttls) == 9  # w, a of "m"; w, p of "t" (no suppression); w, p, s0, s1, a of the sequence
    assert all(0 < ttl <= 60_000 + DEFAULT_GRACE_MS for _, ttl in ttls), ttls


def test_state_urls_choose_the_backend() -> None:
    assert isinstance(create_state("memory://"), MemoryWindowState)
    redis_state = create_state("redis://127.0.0.1:6379/0", key_prefix="p:")
    assert isinstance(redis_state, RedisWindowState)
    assert redis_state.key_prefix == "p:"
    with pytest.raises(ValueError, match="unsupported"):
        create_state("memcached://127.0.0.1")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=op_batches())
async def test_memory_and_redis_agree_on_random_batches(unique_name: str, batches: list[list[WindowOp]]) -> None:
    await agree(unique_name, batches)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=op_batches(("sequence",), focus=True))
async def test_memory_and_redis_agree_on_random_sequences(unique_name: str, batches: list[list[WindowOp]]) -> None:
    await agree(unique_name, batches)


async def agree(unique_name: str, batches: list[list[WindowOp]]) -> None:
    require_server("redis")
    prefix = f"{unique_name}:{random.getrandbits(32):x}:"
    memory = MemoryWindowState()
    async with RedisWindowState(REDIS_URL, key_prefix=prefix) as shared:
        try:
            for batch in batches:
                assert await shared.apply(batch) == await memory.apply(batch)
        finally:
            client = aioredis.Redis.from_url(REDIS_URL)
            keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
            if keys:
                await client.delete(*keys)
            await client.aclose()
