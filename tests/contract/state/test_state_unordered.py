"""The window-state contract for unordered sequences: every step within the window, in any order."""

from __future__ import annotations

import asyncio
import random

from auditflow.backends.state import Hit, WindowOp, WindowState
from tests.contract.state.ops import Backend, apply_each, fired
from tests.factories import FAR_TIMESTAMPS, op

A, B, C = (0,), (1,), (2,)


def anyorder(
    event_id: str, ts: int, matched: tuple[int, ...], group: str = "g1", steps: tuple[int, ...] = (1, 1)
) -> WindowOp:
    """An op of an unordered sequence, by default of two steps of one event each, window 1000."""
    return op("sequence", event_id, ts, group=group, steps=steps, matched=matched, ordered=False)


def described(hits: list[Hit]) -> list[tuple[int, bool, int, int, int, list[str]]]:
    return [(h.op_index, h.new, h.occurrences, h.first_seen_ms, h.last_seen_ms, [e for e, _ in h.events]) for h in hits]


async def test_steps_in_order_fire_on_the_last(state: WindowState) -> None:
    results = await apply_each(state, [anyorder("a", 10, A), anyorder("b", 20, B)])
    assert fired(results) == [False, True]
    assert results[1] is not None
    assert described([results[1]]) == [(0, True, 2, 10, 20, ["a", "b"])]


async def test_steps_in_reverse_order_fire_as_well(state: WindowState) -> None:
    three = [anyorder(f"e{s}", 10 * (3 - s), (s,), steps=(1, 1, 1)) for s in (2, 1, 0)]
    results = await apply_each(state, three)
    assert fired(results) == [False, False, True]
    assert results[2] is not None
    # Oldest first: e0 (ts 30) arrived last but is the newest; e2 (ts 10) the oldest.
    assert described([results[2]]) == [(0, True, 3, 10, 30, ["e2", "e1", "e0"])]


async def test_a_late_event_completes_a_set_of_later_events(state: WindowState) -> None:
    # b at 500 arrives first; a, dated 100, arrives later: the window [100, 1100] holds both.
    results = await apply_each(state, [anyorder("b", 500, B), anyorder("a", 100, A)])
    assert fired(results) == [False, True]
    assert results[1] is not None
    assert described([results[1]]) == [(0, True, 2, 100, 500, ["a", "b"])]
    # Too far apart either way: nothing.
    apart = [anyorder("b", 2_000, B, group="g2"), anyorder("a", 999, A, group="g2")]
    assert fired(await apply_each(state, apart)) == [False, False]


async def test_groups_are_separate_when_interleaved(state: WindowState) -> None:
    ops = [
        anyorder("a1", 10, A, "g1"),
        anyorder("b2", 11, B, "g2"),
        anyorder("b1", 12, B, "g1"),
        anyorder("b3", 13, B, "g3"),
        anyorder("a2", 14, A, "g2"),
        anyorder("c3", 15, B, "g3"),
    ]
    hits = await state.apply(ops)
    assert described(hits) == [(2, True, 2, 10, 12, ["a1", "b1"]), (4, True, 2, 11, 14, ["b2", "a2"])]


async def test_the_window_bounds_the_set_both_ends_included(state: WindowState) -> None:
    stale = [anyorder("a", 0, A, "old"), anyorder("b", 1_001, B, "old")]
    assert fired(await apply_each(state, stale)) == [False, False]
    edge = [anyorder("a", 0, A, "edge"), anyorder("b", 1_000, B, "edge")]
    assert fired(await apply_each(state, edge)) == [False, True]
    # Once the first step slid out, the second alone does not fire again.
    assert fired(await apply_each(state, [anyorder("b2", 1_500, B, "edge")])) == [False]


async def test_duplicates_of_one_step_do_not_complete_another(state: WindowState) -> None:
    same = [anyorder("a1", 0, A), anyorder("a2", 1, A), anyorder("a3", 2, A)]
    assert fired(await apply_each(state, same)) == [False, False, False]
    assert await state.apply([anyorder("a1", 0, A)]) == []  # a redelivery is no new event either
    # With a count of two for the first step: one of each is not enough; the second first-step
    # event completes it.
    counted = [anyorder("x1", 0, A, "g2", (2, 1)), anyorder("y", 5, B, "g2", (2, 1))]
    assert fired(await apply_each(state, counted)) == [False, False]
    hits = await state.apply([anyorder("x2", 8, A, "g2", (2, 1))])
    assert described(hits) == [(0, True, 3, 0, 8, ["x1", "y", "x2"])]


async def test_an_event_matching_every_step_completes_the_set_alone(state: WindowState) -> None:
    # It matched each referenced rule: each of them happened.
    hits = await state.apply([anyorder("both", 7, (0, 1))])
    assert described(hits) == [(0, True, 1, 7, 7, ["both"])]


async def test_further_events_are_repeats_of_the_live_alert(state: WindowState) -> None:
    ops = [anyorder("a", 0, A), anyorder("b", 10, B), anyorder("a2", 20, A), anyorder("b2", 30, B)]
    hits = await state.apply(ops)
    assert [(h.op_index, h.new, h.occurrences, h.alert_id) for h in hits] == [
        (1, True, 2, "alert-b"),
        (2, False, 3, "alert-b"),
        (3, False, 4, "alert-b"),
    ]
    # Redelivered, the batch names the live alert again and changes nothing.
    again = await state.apply(ops)
    assert {(h.alert_id, h.replayed, h.occurrences) for h in again} == {("alert-b", True, 4)}


async def test_without_suppression_each_completing_event_opens_an_alert_with_itself(state: WindowState) -> None:
    def quiet(event_id: str, ts: int, matched: tuple[int, ...]) -> WindowOp:
        return op("sequence", event_id, ts, steps=(1, 1), matched=matched, ordered=False, suppress=0)

    hits = await state.apply([quiet("a", 0, A), quiet("b", 10, B), quiet("a2", 20, A)])
    assert described(hits) == [(1, True, 2, 0, 10, ["a", "b"]), (2, True, 3, 0, 20, ["a", "b", "a2"])]


async def test_an_event_dated_far_in_the_future_neither_completes_nor_evicts(state: WindowState) -> None:
    future = FAR_TIMESTAMPS[-1]
    # A second step dated at the end of 9999 does not complete the present first step.
    assert await state.apply([anyorder("a", 1_000, A), anyorder("b-future", future, B)]) == []
    # Nor does it push that step out of its window: a present second step completes it.
    hits = await state.apply([anyorder("b", 1_500, B)])
    assert described(hits) == [(0, True, 2, 1_000, 1_500, ["a", "b"])]


async def test_an_alert_of_far_future_events_does_not_absorb_the_present(state: WindowState) -> None:
    future = FAR_TIMESTAMPS[-1]
    forged = [anyorder("a-future", future, A), anyorder("b-future", future + 5, B)]
    assert described(await state.apply(forged)) == [(1, True, 2, future, future + 5, ["a-future", "b-future"])]
    present = [anyorder("a", 1_000, A), anyorder("b", 1_010, B)]
    assert described(await state.apply(present)) == [(1, True, 2, 1_000, 1_010, ["a", "b"])]


async def test_a_set_completes_from_events_that_are_all_late(state: WindowState) -> None:
    # Events of a replica that fell behind: all older than the newest the key holds.
    await state.apply([anyorder("x", 5_000, A)])
    hits = await state.apply([anyorder("b", 4_200, B), anyorder("a", 4_100, A)])
    # b, dated before x, completes the set with it ([4_200, 5_200]); a, older still, is a repeat.
    assert described(hits) == [(0, True, 2, 4_200, 5_000, ["b", "x"]), (1, False, 3, 4_200, 5_000, ["a"])]


async def test_the_earliest_window_holding_every_step_decides(state: WindowState) -> None:
    def three(event_id: str, ts: int, matched: tuple[int, ...]) -> WindowOp:
        return op("sequence", event_id, ts, window=100, steps=(1, 1, 1), matched=matched, ordered=False)

    # The third step (195) and a second (130) wait for a first step dated between 95 and 130; an
    # older first and second step (10, 20), which arrive later, have no third within 100 of them.
    held = [three("c", 195, C), three("b", 130, B), three("a-old", 10, A), three("b-old", 20, B)]
    assert await state.apply(held) == []
    hits = await state.apply([three("a", 100, A)])
    assert described(hits) == [(0, True, 3, 100, 195, ["a", "b", "c"])]


async def test_concurrent_replicas_fire_once_per_complete_group(backend: Backend) -> None:
    replicas = [await backend.state() for _ in range(4)]
    # 150 groups with both steps (one event each, in either order of time), 50 with only the first
    # step twice; every event delivered to one replica or another, some twice.
    ops: list[WindowOp] = []
    for g in range(200):
        second = B if g < 150 else A
        ops += [anyorder(f"g{g}-a", g % 7, A, f"user{g}"), anyorder(f"g{g}-b", 3, second, f"user{g}")]
    ops += ops[::5]
    random.Random(11).shuffle(ops)
    batches = [ops[i : i + 20] for i in range(0, len(ops), 20)]

    async def replica(index: int) -> list[tuple[Hit, WindowOp]]:
        out: list[tuple[Hit, WindowOp]] = []
        for batch in batches[index :: len(replicas)]:
            out += [(hit, batch[hit.op_index]) for hit in await replicas[index].apply(batch)]
            await asyncio.sleep(0)  # let the other replicas interleave
        return out

    results = [pair for part in await asyncio.gather(*(replica(i) for i in range(4))) for pair in part]
    opened: dict[str, list[Hit]] = {}
    for hit, fired_op in results:
        assert hit.replayed or hit.new, fired_op  # two events: nothing to repeat, only to replay
        if hit.new:
            opened.setdefault(fired_op.group_key, []).append(hit)
    assert sorted(opened) == sorted(f"user{g}" for g in range(150))
    for group, hits in opened.items():
        [hit] = hits
        number = group.removeprefix("user")
        assert sorted(e for e, _ in hit.events) == [f"g{number}-a", f"g{number}-b"]
