"""Field paths and durations as rules spell them, compiled into fast accessors at load time."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from operator import attrgetter
from typing import Any

import orjson

from auditflow.model.event import Event, through_list

Getter = Callable[[Event], Any]

# `timestamp` is event time, which windows already use; `details` alone is a whole object. Neither
# is a useful condition or grouping value, so rules must name a top-level field or a details path.
TOP_LEVEL_FIELDS = frozenset(Event.model_fields) - {"timestamp", "details"}
MAX_WINDOW = timedelta(days=7)

_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d)")
_ONE_MS = timedelta(milliseconds=1)
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def check_field_path(path: str) -> str:
    """Return `path` when it names an event field or `details.<key>[.<key>…]`; raise ValueError otherwise."""
    if path in TOP_LEVEL_FIELDS:
        return path
    if path.startswith("details."):
        parts = path.split(".")[1:]
        if all(parts):
            return path
        raise ValueError(f"invalid details path {path!r}: empty key")
    known = ", ".join(sorted(TOP_LEVEL_FIELDS))
    raise ValueError(f"unknown field {path!r}: use one of {known} or details.<key>")


def make_getter(path: str) -> Getter:
    """An accessor equivalent to `Event.field_value(path)`, specialised per path because it runs per event."""
    if path == "event_id":
        return lambda event: str(event.event_id)
    if not path.startswith("details."):
        return attrgetter(path)
    keys = path.split(".")[1:]
    if len(keys) == 1:
        key = keys[0]
        return lambda event: event.details.get(key)

    def nested(event: Event) -> Any:
        node: Any = event.details
        for position, key in enumerate(keys):
            if node.__class__ is not dict:
                return through_list(node, keys[position:]) if node.__class__ is list else None
            node = node.get(key)
        return node

    return nested


def group_value(value: Any) -> str | None:
    """A group-by value as the string stored in `Alert.group` (None stays None)."""
    if value is None or value.__class__ is str:
        return value
    if isinstance(value, str):  # StrEnum such as Severity
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def parse_duration(value: Any) -> timedelta:
    """`"90s"`, `"5m"`, `"1h30m"`, `"500ms"`, `"2d"` or integer seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid duration {value!r}: must not be negative")
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return timedelta(seconds=int(text))
        if text and _DURATION_PART.sub("", text) == "":
            total = sum(int(n) * _UNIT_MS[unit] for n, unit in _DURATION_PART.findall(text))
            return timedelta(milliseconds=total)
    raise ValueError(f"invalid duration {value!r}: use e.g. 60s, 5m, 1h or integer seconds")


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling of a duration, e.g. `5m`, `90s`, `1500ms`."""
    ms = to_ms(value)
    if ms == 0:
        return "0s"
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_MS[unit]
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def to_ms(value: timedelta) -> int:
    # integer division: total_seconds() * 1000 loses a millisecond to float rounding (1.001 s -> 1000)
    return value // _ONE_MS
