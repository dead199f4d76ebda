"""The window-state contract: rule evaluations that need memory across events, applied per batch.

The rules engine turns each (rule, event) pair that matters into a `WindowOp`. A state backend
applies a whole batch of ops atomically and in order (one Redis round trip, one Lua call), and
returns a `Hit` for each op that fires. Because windows, de-duplication and suppression all live
in the backend, N analysis replicas sharing one backend produce exactly one alert per rule, group
and suppression period.

Semantics of one op, for its key (rule_id, group_key):
1. De-duplication: an event_id already recorded for the key changes nothing. When the key has a
   live alert (suppression is on and the event's ts is less than `suppress_ms` after the alert's
   last hit, as in 5), the op returns a *replay* hit: that alert as it stands (`new=False`,
   `replayed=True`, occurrences and first/last seen not incremented) with those of its events that
   the key still holds, of the first `MAX_SAMPLE_EVENTS` attributed to it (the ones that opened it,
   oldest first, then its repeats in the order they came); for a match rule, whose keys hold no
   payloads, the op's own event. So a batch applied just before a crash names its alerts again
   when it is redelivered, and they are published then. Otherwise a duplicate yields nothing: no
   alert came from it, or the alert has been forgotten. Replay needs suppression (with
   `suppress_ms == 0` no alert is remembered), and it names the key's current alert: one that a
   later alert has replaced in the meantime is not replayed.
2. `match`: fires on every op (events are remembered for `window_ms` only to de-duplicate).
   Sliding: every recorded op of any kind drops the key's entries older than min(ts, newest) -
   `window_ms`, newest being the newest timestamp the key held before it. So the window follows
   event time, yet no single event can push the others out: one dated far in the future drops
   nothing (its own ts is not the reference), and the events after it are evaluated around their
   own timestamps. A key holds at most `max_entries` entries: when an op older than the newest
   finds more after sliding, the latest timestamps go (all entries of a timestamp together), as a
   flood of far-future events is what could otherwise accumulate. An op whose own entry goes
   yields nothing.
3. `threshold`: the event joins the key's window; it fires when some window of `window_ms`
   containing ts (a true sliding window over event time, not fixed buckets, both ends included)
   holds at least `count` entries, so a late event completes a burst it belongs to. Of the
   fullest such windows, the earliest decides: its events contribute, and the alert's last seen is
   the newest of them. For events in time order that is [ts - `window_ms`, ts].
   With `distinct` set (a distinct-count threshold), windows are measured by the number of
   distinct `distinct` values among their entries instead; the occurrences of a new alert are that
   number, and its contributing events are the first of each value.
4. `sequence`: the event joins the window of every step in `matched_steps`. It fires only when the
   event matches the last step and a chain exists inside [ts - window_ms, ts]: step 0 satisfied by
   `step_counts[0]` events, then step 1 by events after the one that completed step 0, and so on,
   the last step including this event. "After" orders by timestamp, then by arrival: events with
   equal timestamps keep the order in which they reached the state (within a batch, batch order;
   across batches, the order of the calls). Greedy earliest completion decides.
   Fast path: an op whose `matched_steps` lack 0, for a key that holds no step-0 event with a
   timestamp in [ts - window_ms, ts] (each of which arrived before it), is *not recorded*. After
   the de-duplication of 1 (an event recorded earlier still replays its key's live alert) it
   yields nothing and changes nothing: no window entry, payload, expiry or newest timestamp, as if
   it had not arrived. Every chain starts with step 0, and a chain through this event needs step 0
   complete before it (by timestamp, then arrival) and no
   earlier than ts - window_ms: with events in arrival order every chain is still found. Deliberately
   not detected: a step-0 event with an earlier timestamp that arrives *after* such an event does
   not see it (a later step, or the last step's extra events, then miss it). An unrecorded event
   is not remembered either, so its redelivery is evaluated afresh: recorded (and possibly firing)
   if step-0 events have arrived in between, else again nothing. No alert came from its first
   delivery, so there is nothing to replay and nothing is counted twice.
   Unordered (`ordered` false): the steps may happen in any order. The event joins the window of
   every step in `matched_steps` (always recorded: any step may come first, so there is no fast
   path). It fires when some window of `window_ms` containing ts (both ends included, as in 3)
   holds, for every step n, at least `step_counts[n]` events matching step n; an event counts for
   every step it matches, so duplicates of one step never complete another. Of such windows the
   earliest decides, searched from the entries in [ts - window_ms, ts] as starts, so a late event
   completes a set whose other events are later than it. Its contributing events are, for each
   step, the first `step_counts[n]` of it from the window's start (by timestamp, then arrival),
   and the op's own event; occurrences are their number, first and last seen the oldest and the
   newest of them. Nothing is consumed by firing: every later event of any step that finds a
   complete window fires again (a repeat while the alert is live, as in 5).
5. Suppression: a firing op whose key has a live alert (its last hit less than `suppress_ms` ago,
   in event time, and less than `suppress_ms` + `window_ms` after ts, so that an alert opened by an
   event dated far in the future does not absorb the alerts of the present) increments that
   alert's occurrences by one and returns `new=False` with this event only. Otherwise a new alert
   `new_alert_id` opens with occurrences = the number of contributing events (1 for match; for a
   distinct count, the number of values) and the contributing events, oldest first, capped at
   `MAX_SAMPLE_EVENTS`; its last hit is ts (for a threshold or an unordered sequence, its newest
   contributing event, see 3 and 4).
   `suppress_ms == 0` disables suppression.
   An empty `new_alert_id` asks the backend for the derived one, `derived_alert_id(rule_id,
   group_key, event_id)`: computed only for the few ops that open an alert.
Every key expires once nothing can refer to it any more, so memory stays bounded.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from hashlib import sha1
from typing import Literal, NamedTuple
from uuid import UUID

from auditflow.lifecycle import AsyncLifecycle
from auditflow.model.alert import MAX_SAMPLE_EVENTS

RuleKind = Literal["match", "threshold", "sequence"]

# The most entries one key holds; above it, ops older than the key's newest evict the latest.
# Twice the largest threshold count a rule may set, so no rule is ever short of entries.
MAX_ENTRIES = 20_000

__all__ = [
    "ALERT_NAMESPACE", "MAX_ENTRIES", "MAX_SAMPLE_EVENTS", "Hit", "RuleKind", "WindowOp", "WindowState",
    "derived_alert_id",
]  # fmt: skip

# Alert ids derive from what opened the alert, so a batch reprocessed after a crash (or by another
# replica) names the same alert again and the store's upsert makes the retry harmless. window.lua
# derives the same ids from the same bytes.
ALERT_NAMESPACE = UUID("5d0c2f6e-4a8e-4f2b-9a57-0f1c3e7b9a21")
_NAMESPACE_BYTES = ALERT_NAMESPACE.bytes


def derived_alert_id(rule_id: str, group_key: str, event_id: str) -> str:
    """`str(uuid5(ALERT_NAMESPACE, rule_id + "\x1f" + group_key + "\x1f" + event_id))` without the
    UUID objects."""
    name = f"{rule_id}\x1f{group_key}\x1f{event_id}".encode()
    digest = bytearray(sha1(_NAMESPACE_BYTES + name, usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class WindowOp(NamedTuple):
    """One rule evaluated against one event. A named tuple: the engine builds one per matching
    (rule, event), and a tuple is several times cheaper to build than a frozen dataclass."""

    rule_id: str
    group_key: str
    kind: RuleKind
    event_id: str
    ts_ms: int
    payload: bytes
    window_ms: int
    suppress_ms: int
    new_alert_id: str  # "" for derived_alert_id(rule_id, group_key, event_id)
    count: int = 1  # type: ignore[assignment]  # the threshold count, shadowing tuple.count
    step_counts: tuple[int, ...] = ()
    matched_steps: tuple[int, ...] = ()
    distinct: str | None = None  # a distinct-count threshold: the value this event counts as
    ordered: bool = True  # a sequence whose steps may happen in any order when False (4)


@dataclass(slots=True)
class Hit:
    """A firing op: a new alert, one more occurrence of a live one, or (`replayed`) a live alert
    named again by a redelivered event, unchanged."""

    op_index: int
    alert_id: str
    new: bool
    occurrences: int
    first_seen_ms: int
    last_seen_ms: int
    events: list[tuple[str, bytes]] = field(default_factory=list)  # (event_id, payload), oldest first
    replayed: bool = False


class WindowState(AsyncLifecycle):
    """Lifecycle: `start()`, `apply()` any number of times, `aclose()`; or `async with`."""

    # Whether the ops' payload objects themselves are kept (in process) rather than sent away.
    holds_payloads = True

    def __init__(self, url: str, *, key_prefix: str = "auditflow:") -> None:
        self.url = url
        self.key_prefix = key_prefix

    @abc.abstractmethod
    async def apply(self, ops: Sequence[WindowOp]) -> list[Hit]:
        """Apply the ops atomically, in order; return the hits in op order."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise BackendUnavailable when the backend cannot be reached."""
