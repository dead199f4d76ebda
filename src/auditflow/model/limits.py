"""What every part downstream of intake can store and compute with, checked once at the edge: the
API, the broker decoder and the log parsers apply these same rules, so an event that got in never
fails later in a database, a JSON encoder or a window computation.

* Text (keys and values, anywhere in an event) holds no NUL (PostgreSQL `text` and `jsonb` refuse
  it) and no lone surrogate (UTF-8 cannot encode it).
* `details` nests at most `MAX_DETAILS_DEPTH` containers deep, its integers fit in 64 bits
  (signed: PostgreSQL `bigint`, SQLite `INTEGER`, JSON encoders) and its numbers are finite.
* Timestamps lie between `MIN_EVENT_TIME` and `MAX_EVENT_TIME`; where events enter from clients,
  `EventTimeBounds` also limits how far in the future (clock skew) and how old they may be.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

MAX_DETAILS_DEPTH = 32
MIN_INT = -(2**63)
MAX_INT = 2**63 - 1
MIN_EVENT_TIME = datetime(1970, 1, 1, tzinfo=UTC)
# A day short of datetime's own end: formatting, rounding and millisecond arithmetic never overflow
# (the window state bounds its own window arithmetic; intake's future limit keeps such times out).
MAX_EVENT_TIME = datetime(9999, 12, 31, tzinfo=UTC)

# NUL and the surrogate range; valid text never matches, so the usual check is one regex scan.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

# Sent by a client whose events are old on purpose (`auditflow ingest`): the maximum age does not apply.
BACKFILL_HEADER = "X-AuditFlow-Backfill"

# The key of the validation context under which intake passes its `EventTimeBounds`.
TIME_BOUNDS_CONTEXT = "event_time_bounds"


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored, or None."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains a NUL character, which cannot be stored"
    return "contains a lone surrogate (U+D800..U+DFFF), which is not valid Unicode text"


def check_text(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def json_problem(value: Any, path: str = "details", depth: int = 1) -> str | None:
    """The first reason a JSON-like value cannot be stored, naming its path, or None.

    `depth` counts containers: `{}` is depth 1, `{"a": {}}` depth 2."""
    if depth > MAX_DETAILS_DEPTH:
        return f"{path}: nested more than {MAX_DETAILS_DEPTH} levels deep"
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if isinstance(key, str):
            problem = text_problem(key)
            if problem is not None:
                return f"{path}: key {_short(key)} {problem}"
            where = f"{path}.{key}"
        else:
            where = f"{path}[{key}]"
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                return f"{where}: {problem}"
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{where}: {item} is not a JSON number"
        elif isinstance(item, int):
            if not MIN_INT <= item <= MAX_INT:
                return f"{where}: integer outside the 64-bit range [{MIN_INT}, {MAX_INT}]"
        elif isinstance(item, dict | list):
            problem = json_problem(item, where, depth + 1)
            if problem is not None:
                return problem
    return None


def plain_structure(value: dict[str, Any] | list[Any], depth: int = 1) -> bool:
    """True when nesting, integers and floats are within the rules: the cheap pass for the usual
    event, with text left to a scan of the encoded JSON (`details_problem`)."""
    if depth > MAX_DETAILS_DEPTH:
        return False
    for item in value.values() if isinstance(value, dict) else value:
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if not MIN_INT <= item <= MAX_INT:
                return False
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif kind is dict or kind is list:
            if not plain_structure(item, depth + 1):
                return False
        elif isinstance(item, int | float | dict | list):  # subclasses: let the full walk judge
            return False
    return True


def details_problem(details: dict[str, Any], encoded: bytes) -> str | None:
    """Why `details` (encoded by orjson as `encoded`) cannot be stored, or None. orjson writes NUL
    as an escape and refuses lone surrogates, so text needs no walk of its own unless it fails."""
    if b"\\u0000" in encoded or not plain_structure(details):
        # The full walk decides: the bytes also match an escaped backslash before `u0000`.
        return json_problem(details)
    return None


def _short(key: str) -> str:
    return repr(key if len(key) <= 40 else key[:40] + "...")


def timestamp_problem(value: datetime) -> str | None:
    """Why an (aware, UTC) event time is outside what the pipeline can compute with, or None."""
    if value < MIN_EVENT_TIME:
        return f"before {MIN_EVENT_TIME:%Y-%m-%d} (event times start at the Unix epoch)"
    if value >= MAX_EVENT_TIME:
        return f"at or after {MAX_EVENT_TIME:%Y-%m-%d}, the latest time the pipeline can compute with"
    return None


@dataclass(frozen=True, slots=True)
class EventTimeBounds:
    """How far an event's time may differ from the time it is received, at intake.

    `max_future`: accepted clock skew ahead of now. `max_age`: None for no limit (backfill of old
    logs detects on event time, so old events are normal). Events outside are refused, not
    re-timed: a moved timestamp would silently change which windows the event falls into."""

    max_future: timedelta
    max_age: timedelta | None = None

    @classmethod
    def from_seconds(cls, max_future: float, max_age: float) -> EventTimeBounds:
        return cls(timedelta(seconds=max_future), timedelta(seconds=max_age) if max_age > 0 else None)

    def without_age_limit(self) -> EventTimeBounds:
        return EventTimeBounds(self.max_future, None)

    def problem(self, value: datetime, now: datetime | None = None) -> str | None:
        now = now or datetime.now(UTC)
        if value - now > self.max_future:
            return (
                f"more than {_span(self.max_future)} in the future (received at {now:%Y-%m-%dT%H:%M:%SZ});"
                " check the sender's clock"
            )
        if self.max_age is not None and now - value > self.max_age:
            return f"older than the accepted maximum age of {_span(self.max_age)}"
        return None


def _span(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} s"
