"""The window-state contract for suppression, de-duplication and the replay of redelivered events."""

from __future__ import annotations

import asyncio
import random

from auditflow.backends.state import Hit, WindowOp, WindowState
from tests.contract.state.ops import Backend, seq
from tests.factories import op


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
