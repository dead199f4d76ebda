"""In-process window state (`memory://`) for the embedded mode: the `WindowState` contract in plain
Python, with keys expiring on a wall-clock TTL like their Redis counterparts so memory stays bounded."""

from __future__ import annotations

import time
from bisect import bisect_left, insort
from collections.abc import Callable, Sequence

from auditflow.backends.state.base import (
    MAX_ENTRIES,
    MAX_SAMPLE_EVENTS,
    Hit,
    WindowOp,
    WindowState,
    derived_alert_id,
)
from auditflow.backends.state.sequences import Entry as _Entry
from auditflow.backends.state.sequences import StepIndex, ordered_chain, unordered_set

__all__ = ["DEFAULT_GRACE_MS", "MemoryWindowState"]

# How long a key outlives its window and suppression period, in wall-clock time: events delivered
# late (broker backlog, redelivery) still find the state they refer to.
DEFAULT_GRACE_MS = 60_000
# Expired keys are swept at most this often; a sweep only visits the keys that expired.
_SWEEP_INTERVAL_MS = 1_000

# Windows this small are searched for duplicates directly; larger ones get a set of event ids.
_SMALL_WINDOW = 8

# Entries (_Entry: ts_ms, event_id, payload, step mask, arrival number, distinct value) are kept
# sorted: by event time, then event id, as Redis orders a sorted set's members of equal score.
# Sequences order equal timestamps by arrival instead (base.py, 4).
_Key = tuple[str, str]


class _Window:
    """The state of one (rule_id, group_key): its recent events and its live alert, if any."""

    __slots__ = (
        "alert_id", "arrivals", "deadline_ms", "entries", "evidence", "first_ms", "ids", "last_ms", "occurrences",
        "steps", "ttl_ms",
    )  # fmt: skip

    def __init__(self) -> None:
        self.entries: list[_Entry] = []
        self.ids: set[str] | None = None  # only for windows larger than _SMALL_WINDOW
        self.alert_id: str | None = None
        self.occurrences = 0
        self.first_ms = 0
        self.last_ms = 0
        # (ts_ms, event_id) of the events attributed to the live alert, for a replay; not for match
        # rules, whose keys hold no payloads.
        self.evidence: list[tuple[int, str]] | None = None
        self.ttl_ms = -1
        self.deadline_ms = -1
        self.arrivals = 0  # numbers the recorded events, for the arrival order of equal timestamps
        self.steps: StepIndex | None = None  # the entries by step, once a sequence is evaluated

    def holds(self, event_id: str) -> bool:
        if self.ids is not None:
            return event_id in self.ids
        return any(entry[1] == event_id for entry in self.entries)


class MemoryWindowState(WindowState):
    """Window state in a dict; `apply()` never awaits, so each batch is atomic within the process."""

    def __init__(
        self,
        url: str = "memory://",
        *,
        key_prefix: str = "auditflow:",
        grace_ms: int = DEFAULT_GRACE_MS,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(url, key_prefix=key_prefix)
        self._grace_ms = grace_ms
        self._max_entries = max(1, max_entries)
        self._clock = clock
        self._windows: dict[_Key, _Window] = {}
        # One dict per TTL in touch order, so its oldest entries are the first to expire.
        self._expiry: dict[int, dict[_Key, int]] = {}
        self._next_sweep_ms = 0

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    def __len__(self) -> int:
        """The number of live keys."""
        return len(self._windows)

    async def apply(self, ops: Sequence[WindowOp]) -> list[Hit]:
        now_ms = int(self._clock() * 1000)
        if now_ms >= self._next_sweep_ms:
            self._sweep(now_ms)
            self._next_sweep_ms = now_ms + _SWEEP_INTERVAL_MS
        hits: list[Hit] = []
        for index, op in enumerate(ops):
            hit = self._apply_one(index, op, now_ms)
            if hit is not None:
                hits.append(hit)
        return hits

    def _sweep(self, now_ms: int) -> None:
        windows = self._windows
        for bucket in self._expiry.values():
            expired: list[_Key] = []
            for key, deadline in bucket.items():
                if deadline > now_ms:
                    break
                expired.append(key)
            for key in expired:
                del bucket[key]
                del windows[key]
        for ttl in [ttl for ttl, bucket in self._expiry.items() if not bucket]:
            del self._expiry[ttl]

    def _touch(self, key: _Key, window: _Window, ttl_ms: int, now_ms: int) -> None:
        if window.deadline_ms == now_ms + ttl_ms:
            return  # touched already in this batch (or its deadline is unchanged anyway)
        window.deadline_ms = now_ms + ttl_ms
        if window.ttl_ms != ttl_ms:
            if window.ttl_ms >= 0:
                del self._expiry[window.ttl_ms][key]
            window.ttl_ms = ttl_ms
        bucket = self._expiry.get(ttl_ms)
        if bucket is None:
            bucket = self._expiry[ttl_ms] = {}
        else:
            bucket.pop(key, None)  # re-inserted at the end: touch order is deadline order
        bucket[key] = now_ms + ttl_ms

    def _apply_one(self, index: int, op: WindowOp, now_ms: int) -> Hit | None:
        key = (op.rule_id, op.group_key)
        window = self._windows.get(key)
        if window is not None and window.holds(op.event_id):
            return _replay(index, op, window)
        if op.kind == "sequence" and op.ordered and 0 not in op.matched_steps and not _starts_before(window, op):
            return None  # not recorded: no step-0 event precedes it in the window (base.py, 4)
        if window is None:
            window = self._windows[key] = _Window()
        self._touch(key, window, max(op.window_ms, op.suppress_ms) + self._grace_ms, now_ms)

        ts = op.ts_ms
        mask = 0
        if op.matched_steps:
            for step in op.matched_steps:
                mask |= 1 << step
        entries = window.entries
        newest = entries[-1][0] if entries else ts  # before this event
        window.arrivals += 1
        # A match rule keeps event ids only to de-duplicate; its hit carries the payload itself.
        entry = (ts, op.event_id, b"" if op.kind == "match" else op.payload, mask, window.arrivals, op.distinct)
        if not entries or entries[-1] < entry:
            entries.append(entry)  # the usual case: events arrive in time order
        else:
            insort(entries, entry)
        if window.steps is not None:
            window.steps.add(entry)
        ids = window.ids
        if ids is not None:
            ids.add(op.event_id)
        elif len(entries) > _SMALL_WINDOW:
            ids = window.ids = {entry[1] for entry in entries}
        # Slide from the older of this event and the newest before it, so that no single event,
        # however far in the future, pushes the others out of their windows (base.py, 3).
        cutoff = min(ts, newest) - op.window_ms
        if entries[0][0] < cutoff:
            stale = bisect_left(entries, (cutoff,))
            if ids is not None:
                for old in entries[:stale]:
                    ids.discard(old[1])
            del entries[:stale]
            if window.steps is not None:
                window.steps.drop_below(cutoff)
        if newest > ts and len(entries) > self._max_entries:
            # Only an event older than the newest can grow a key beyond its window. The latest
            # timestamps go: far-future ones are the kind that never slide out by themselves.
            top = entries[self._max_entries][0]
            keep = bisect_left(entries, (top,))
            if ids is not None:
                for old in entries[keep:]:
                    ids.discard(old[1])
            del entries[keep:]
            if window.steps is not None:
                window.steps.drop_from(top)
            if ts >= top:
                return None  # evicted on arrival

        last_ms = ts
        if op.kind == "match":
            contributing: list[_Entry] = [(ts, op.event_id, op.payload, mask, 0, None)]
            occurrences = 1
        elif op.kind == "threshold":
            found = _threshold(entries, op, newest)
            if found is None:
                return None
            contributing, occurrences, last_ms = found
        elif op.ordered:
            if len(op.step_counts) - 1 not in op.matched_steps:
                return None  # only the last step completes a chain
            if window.steps is None:
                window.steps = StepIndex(entries, len(op.step_counts))
            chain = ordered_chain(window.steps, op)
            if chain is None:
                return None
            contributing, occurrences = chain
        else:
            if window.steps is None:
                window.steps = StepIndex(entries, len(op.step_counts))
            found = unordered_set(window.steps, op, entry)
            if found is None:
                return None
            contributing, occurrences, last_ms = found

        if (
            op.suppress_ms > 0
            and window.alert_id is not None
            and -op.suppress_ms - op.window_ms < ts - window.last_ms < op.suppress_ms
        ):
            window.occurrences += 1
            window.last_ms = max(window.last_ms, ts)
            evidence = window.evidence
            if evidence is not None and len(evidence) < MAX_SAMPLE_EVENTS:
                evidence.append((ts, op.event_id))
            return Hit(
                index,
                window.alert_id,
                False,
                window.occurrences,
                window.first_ms,
                window.last_ms,
                [(op.event_id, op.payload)],
            )
        first_ms = contributing[0][0]
        alert_id = op.new_alert_id or derived_alert_id(op.rule_id, op.group_key, op.event_id)
        if op.suppress_ms > 0:
            window.alert_id = alert_id
            window.occurrences = occurrences
            window.first_ms = first_ms
            window.last_ms = last_ms
            window.evidence = None if op.kind == "match" else [(e[0], e[1]) for e in contributing[:MAX_SAMPLE_EVENTS]]
        events = [(e[1], e[2]) for e in contributing[:MAX_SAMPLE_EVENTS]]
        return Hit(index, alert_id, True, occurrences, first_ms, last_ms, events)


def _replay(index: int, op: WindowOp, window: _Window) -> Hit | None:
    """A redelivered op: its key's live alert named again, unchanged, or None when there is none."""
    alert_id = window.alert_id
    if op.suppress_ms <= 0 or alert_id is None or op.ts_ms - window.last_ms >= op.suppress_ms:
        return None
    if op.kind == "match":
        events = [(op.event_id, op.payload)]  # match keys hold no payloads
    else:
        entries = window.entries
        held: dict[str, bytes] = {}  # an event forgotten and then recorded again is attributed twice
        for ts, event_id in window.evidence or ():
            position = bisect_left(entries, (ts, event_id))
            if position < len(entries) and entries[position][1] == event_id:
                held.setdefault(event_id, entries[position][2])
            elif window.holds(event_id):  # recorded again at another time: rare, so searched
                held.setdefault(event_id, next(entry[2] for entry in entries if entry[1] == event_id))
        events = list(held.items())
    return Hit(index, alert_id, False, window.occurrences, window.first_ms, window.last_ms, events, True)


def _threshold(entries: list[_Entry], op: WindowOp, newest: int) -> tuple[list[_Entry], int, int] | None:
    """The contributing events, occurrences and last seen of the fullest window of `window_ms`
    around the op's event (the earliest of equally full ones), or None when it holds too few."""
    ts, span = op.ts_ms, op.window_ms
    low = bisect_left(entries, (ts - span,))
    if op.distinct is None and newest <= ts:
        # Nothing later than ts: the fullest window is [ts - window_ms, ts] (the usual case).
        occurrences = len(entries) - low
        if occurrences < max(1, op.count):
            return None
        return entries[low : low + MAX_SAMPLE_EVENTS], occurrences, ts
    near = entries[low : bisect_left(entries, (ts + (span if newest > ts else 0) + 1,))]
    best, best_start, best_end = 0, 0, 0
    counts: dict[str | None, int] = {}
    distinct = 0
    end = 0
    for start, first in enumerate(near):
        if first[0] > ts:
            break
        while end < len(near) and near[end][0] <= first[0] + span:
            value = near[end][5]
            counts[value] = counts.get(value, 0) + 1
            distinct += counts[value] == 1
            end += 1
        size = distinct if op.distinct is not None else end - start
        if size > best:
            best, best_start, best_end = size, start, end
        counts[first[5]] -= 1
        distinct -= counts[first[5]] == 0
    if best < max(1, op.count):
        return None
    inside = near[best_start:best_end]
    if op.distinct is not None:
        firsts: dict[str | None, _Entry] = {}
        for entry in inside:
            firsts.setdefault(entry[5], entry)  # the first event of each value, in time order
        inside = list(firsts.values())
    return inside[:MAX_SAMPLE_EVENTS], best, near[best_end - 1][0]


def _starts_before(window: _Window | None, op: WindowOp) -> bool:
    """Whether the window holds a step-0 event in [ts - window_ms, ts]: it arrived earlier."""
    if window is None:
        return False
    if window.steps is not None:
        first = window.steps.nth(0, op.ts_ms - op.window_ms, 1)
        return first is not None and first <= op.ts_ms
    entries = window.entries
    for position in range(bisect_left(entries, (op.ts_ms - op.window_ms,)), bisect_left(entries, (op.ts_ms + 1,))):
        if entries[position][3] & 1:
            return True
    return False
