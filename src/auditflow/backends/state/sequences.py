"""Sequences in the memory window state (base.py, 4): a per-step index of a key's events, and the
searches over it for the chain of an ordered sequence and the set of an unordered one."""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable

from auditflow.backends.state.base import MAX_SAMPLE_EVENTS, WindowOp

__all__ = ["Entry", "StepIndex", "ordered_chain", "unordered_set"]

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

    def items(self, step: int) -> list[_Item]:
        return self._steps[step] if step < len(self._steps) else []

    def nth(self, step: int, low: int, n: int) -> int | None:
        """The timestamp of the step's n-th event from low on, or None when it has fewer."""
        if step >= len(self._steps):
            return None
        items = self._steps[step]
        position = bisect_left(items, (low,)) + n - 1
        return items[position][0] if position < len(items) else None

    def first(self, step: int, low: int, n: int) -> list[Entry]:
        """The step's first n events from low on."""
        items = self._steps[step]
        start = bisect_left(items, (low,))
        return [item[2] for item in items[start : start + n]]


def ordered_chain(index: StepIndex, op: WindowOp) -> tuple[list[Entry], int] | None:
    """The greedy earliest chain ending with the op's event, as its events (the first
    `MAX_SAMPLE_EVENTS` at least) and its length, or None when there is none. Each step takes its
    first `count` events after the event that completed the previous step, by (timestamp,
    arrival); the last step takes every event up to ts, which are counted rather than read."""
    counts = op.step_counts
    last = len(counts) - 1
    if last < 0 or last not in op.matched_steps:
        return None
    ts = op.ts_ms
    after = (ts - op.window_ms, 0)  # the first (timestamp, arrival) a step's event may have
    chain: list[Entry] = []
    for step in range(last + 1):
        items = index.items(step)
        start, end = bisect_left(items, after), bisect_left(items, (ts + 1,))
        need = max(1, counts[step])
        if end - start < need:
            return None
        if step == last:
            shown = max(0, MAX_SAMPLE_EVENTS - len(chain))
            chain.extend(item[2] for item in items[start : min(start + shown, end)])
            return chain, len(chain) + max(0, end - start - shown)
        got = items[start : start + need]
        chain.extend(item[2] for item in got)
        after = (got[-1][0], got[-1][1] + 1)  # the next step starts strictly after this event
    return None


def unordered_set(index: StepIndex, op: WindowOp, own: Entry) -> tuple[list[Entry], int, int] | None:
    """The contributing events, occurrences and last seen of the earliest window of `window_ms`
    around the op's event (`own`) that holds every step, or None when there is none.

    The window [start, start + window_ms] holds every step when the latest of the steps' n-th
    events from start on (n the step's count) is inside it. When it is not, no window starting
    before that event's time - window_ms can hold it either, so the search moves there. Each move
    passes at least one event; usually the first or second start decides, a few lookups per step
    whatever the number of events held."""
    ts, span = op.ts_ms, op.window_ms
    counts = [max(1, n) for n in op.step_counts]
    start = ts - span
    while counts and start <= ts:
        complete = start
        for step, n in enumerate(counts):
            end = index.nth(step, start, n)
            if end is None:
                return None  # too few events of the step from start on: later starts have fewer
            complete = max(complete, end)
        if complete <= start + span:
            # Of each step its first events from the window's start, and the op's own event.
            picked = {own[4]: own}
            for step, n in enumerate(counts):
                for entry in index.first(step, start, n):
                    picked[entry[4]] = entry
            chosen = sorted(picked.values(), key=_arrival)
            return chosen[:MAX_SAMPLE_EVENTS], len(chosen), chosen[-1][0]
        start = complete - span
    return None


def _arrival(entry: Entry) -> tuple[int, int]:
    return entry[0], entry[4]
