"""The window-state contract for sequences: step order, windows, arrival order of equal timestamps."""

from __future__ import annotations

from auditflow.backends.state import WindowOp, WindowState
from auditflow.backends.state.base import MAX_SAMPLE_EVENTS
from tests.contract.state.ops import Backend, apply_each, fired, seq, stored
from tests.factories import op


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


def burst(event_id: str, ts: int, matched: tuple[int, ...], group: str = "g1") -> WindowOp:
    """login-after-failure-burst: three failures (step 0), then a success (step 1)."""
    return op("sequence", event_id, ts, group=group, window=300_000, steps=(3, 1), matched=matched)


async def test_failures_and_a_success_in_one_second_fire_in_arrival_order(state: WindowState) -> None:
    # sshd with one-second timestamps: everything at 5_000, in line order.
    batch = [burst("f1", 5_000, (0,)), burst("f2", 5_000, (0,)), burst("f3", 5_000, (0,)), burst("ok", 5_000, (1,))]
    hits = await state.apply(batch)
    assert [(h.op_index, h.new, h.occurrences, [e for e, _ in h.events]) for h in hits] == [
        (3, True, 4, ["f1", "f2", "f3", "ok"])
    ]
    assert (hits[0].first_seen_ms, hits[0].last_seen_ms) == (5_000, 5_000)
    # Redelivered, the batch replays that alert and changes nothing.
    again = await state.apply(batch)
    assert {(h.alert_id, h.replayed, h.occurrences) for h in again} == {("alert-ok", True, 4)}


async def test_same_second_order_holds_across_batches(state: WindowState) -> None:
    # A success logged before the failures in the same second does not follow them.
    early = [burst("ok1", 5_000, (1,), "g2"), *(burst(f"f{i}", 5_000, (0,), "g2") for i in range(3))]
    assert fired(await apply_each(state, early)) == [False] * 4
    hits = await state.apply([burst("ok2", 5_000, (1,), "g2")])
    assert [[e for e, _ in h.events] for h in hits] == [["f0", "f1", "f2", "ok2"]]
    # Failures split over batches, the success in a third one, all in one second.
    split = [burst("f1", 7_000, (0,), "g3"), burst("f2", 7_000, (0,), "g3")]
    assert await state.apply(split) == []
    assert await state.apply([burst("f3", 7_000, (0,), "g3")]) == []
    assert [h.op_index for h in await state.apply([burst("ok", 7_000, (1,), "g3")])] == [0]


async def test_an_event_of_two_steps_counts_once_per_chain(state: WindowState) -> None:
    # "a" matches both steps: it cannot complete step 0 and be step 1 too, even at one timestamp.
    ops = [seq("f1", 10, (0,)), seq("a", 10, (0, 1))]
    assert fired(await apply_each(state, ops)) == [False, False]
    assert [[e for e, _ in h.events] for h in await state.apply([seq("b", 10, (0, 1))])] == [["f1", "a", "b"]]


async def test_a_last_step_with_more_events_than_samples_counts_them_all(state: WindowState) -> None:
    # Without suppression each success opens an alert whose chain is the failure and every success
    # so far; its samples are the first MAX_SAMPLE_EVENTS of them.
    ops = [op("sequence", "f", 0, steps=(1, 1), matched=(0,), suppress=0)]
    ops += [op("sequence", f"s{i}", 1 + i, steps=(1, 1), matched=(1,), suppress=0) for i in range(30)]
    hits = await state.apply(ops)
    assert [h.occurrences for h in hits] == list(range(2, 32))
    last = hits[-1]
    assert [e for e, _ in last.events] == ["f", *(f"s{i}" for i in range(MAX_SAMPLE_EVENTS - 1))]
    assert (last.first_seen_ms, last.last_seen_ms) == (0, 30)
