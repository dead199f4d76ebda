"""The window-state contract for match and threshold windows: counting, sliding, late events."""

from __future__ import annotations

from typing import Any

from auditflow.backends.state import WindowOp, WindowState
from auditflow.backends.state.base import MAX_SAMPLE_EVENTS
from tests.contract.state.ops import apply_each, fired
from tests.factories import op


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


def user(event_id: str, ts: int, name: str, **kwargs: Any) -> WindowOp:
    """A distinct-count threshold op: three distinct usernames within a second."""
    return op("threshold", event_id, ts, count=3, distinct=name, **kwargs)


async def test_a_distinct_count_threshold_counts_values(state: WindowState) -> None:
    ops = [user("e0", 0, "admin"), user("e1", 10, "admin"), user("e2", 20, "oracle"), user("e3", 30, "oracle")]
    assert await state.apply(ops) == []
    hits = await state.apply([user("e4", 40, "test"), user("e5", 50, "guest")])
    assert [(h.op_index, h.new, h.occurrences, h.first_seen_ms, h.last_seen_ms) for h in hits] == [
        (0, True, 3, 0, 40),
        (1, False, 4, 0, 50),
    ]
    assert [e for e, _ in hits[0].events] == ["e0", "e2", "e4"]  # the first event of each value


async def test_a_distinct_count_window_slides(state: WindowState) -> None:
    spread = [user(f"e{i}", i * 600, name) for i, name in enumerate(["a", "b", "c", "d"])]
    assert await state.apply(spread) == []  # never three names within a second
    # Around 1500, [600, 1600] and [1200, 2200] hold three names each: the earlier one decides.
    hits = await state.apply([user("late", 1_500, "e")])
    assert [(h.occurrences, h.first_seen_ms, [e for e, _ in h.events]) for h in hits] == [
        (3, 600, ["e1", "e2", "late"])
    ]


async def test_a_late_event_completes_the_fullest_distinct_window(state: WindowState) -> None:
    ops = [user("a", 0, "u1", group="g2"), user("b", 900, "u2", group="g2"), user("c", 1_800, "u3", group="g2")]
    assert await state.apply(ops) == []
    hits = await state.apply([user("d", 950, "u1", group="g2")])  # [900, 1900]: u2, u1, u3
    assert [(h.occurrences, h.first_seen_ms, h.last_seen_ms, [e for e, _ in h.events]) for h in hits] == [
        (3, 900, 1_800, ["b", "d", "c"])
    ]
