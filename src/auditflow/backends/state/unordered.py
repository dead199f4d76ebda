"""Unordered sequences in the memory window state (base.py, 4): a per-step index of a key's events,
so that most ops are decided by counting, and the search for the earliest complete window."""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable

from auditflow.backends.state.base import MAX_SAMPLE_EVENTS, WindowOp

__all__ = ["StepIndex", "unordered_set"]

# (ts_ms, event_id, payload, step mask, arrival number, distinct value): memory.py's window entry.
Entry = tuple[int, str, bytes, int, int, str | None]
# (ts_ms, arrival number, entry): sorted by event time, then arrival, as the steps' Redis keys are.
_Item = tuple[int, int, Entry]


class StepIndex:
    """The entries of one key by step, each list in (timestamp, arrival) order."""

    __slots__ = ("_steps",)

    def __init__(self, entries: Iterable[Entry], steps: int) -> None:
        self._steps: list[list[_Item]] = [[] for _ in range(steps)]
        for entry in sorted(entries, key=_arrival):
            self.add(entry)

    def add(self, entry: Entry) -> None:
        mask, step = entry[3], 0
        while mask:
            if mask & 1:
                if step >= len(self._steps):
                    self._steps.extend([] for _ in range(step + 1 - len(self._steps)))
                items = self._steps[step]
                item = (entry[0], entry[4], entry)
                if not items or items[-1] < item:
                    items.append(item)
                else:
                    insort(items, item)
            mask >>= 1
            step += 1

    def drop_below(self, cutoff: int) -> None:
        for items in self._steps:
            del items[: bisect_left(items, (cutoff,))]

    def drop_from(self, top: int) -> None:
        for items in self._steps:
            del items[bisect_left(items, (top,)) :]

    def count(self, step: int, low: int, high: int) -> int:
        """The events of the step in [low, high]."""
        if step >= len(self._steps):
            return 0
        items = self._steps[step]
        return bisect_left(items, (high + 1,)) - bisect_left(items, (low,))

    def first(self, step: int, low: int, n: int) -> list[Entry]:
        """The step's first n events from low on."""
        items = self._steps[step]
        start = bisect_left(items, (low,))
        return [item[2] for item in items[start : start + n]]


def unordered_set(
    entries: list[Entry], index: StepIndex, op: WindowOp, newest: int, own: Entry
) -> tuple[list[Entry], int, int] | None:
    """The contributing events, occurrences and last seen of the earliest window of `window_ms`
    around the op's event (`own`) that holds every step, or None when there is none."""
    ts, span = op.ts_ms, op.window_ms
    counts = [max(1, n) for n in op.step_counts]
    high = ts + span if newest > ts else ts
    if not counts or any(index.count(step, ts - span, high) < n for step, n in enumerate(counts)):
        return None  # the usual case of an incomplete set, by counting alone
    if newest <= ts:
        # Nothing later than ts: the earliest window starts at the first entry from ts - window_ms
        # and holds every entry up to ts, so each step's first events from there contribute.
        picked = {own[4]: own}
        for step, n in enumerate(counts):
            for entry in index.first(step, ts - span, n):
                picked[entry[4]] = entry
        return _contribution(sorted(picked.values(), key=_arrival))
    near = entries[bisect_left(entries, (ts - span,)) : bisect_left(entries, (high + 1,))]
    near.sort(key=_arrival)
    steps = range(len(counts))
    have = [0] * len(counts)
    short, end, found = len(counts), 0, -1
    for start, first in enumerate(near):
        if first[0] > ts:
            break
        while end < len(near) and near[end][0] <= first[0] + span:
            mask = near[end][3]
            for step in steps:
                if mask >> step & 1:
                    have[step] += 1
                    short -= have[step] == counts[step]
            end += 1
        if short == 0:
            found = start
            break
        for step in steps:
            if first[3] >> step & 1:
                short += have[step] == counts[step]
                have[step] -= 1
    if found < 0:
        return None
    # Of each step its first events from the window's start, and the op's own event.
    chosen: list[Entry] = []
    for entry in near[found:end]:
        take = entry[4] == own[4]
        for step in steps:
            if entry[3] >> step & 1 and counts[step] > 0:
                counts[step] -= 1
                take = True
        if take:
            chosen.append(entry)
    return _contribution(chosen)


def _contribution(chosen: list[Entry]) -> tuple[list[Entry], int, int]:
    return chosen[:MAX_SAMPLE_EVENTS], len(chosen), chosen[-1][0]


def _arrival(entry: Entry) -> tuple[int, int]:
    return entry[0], entry[4]
