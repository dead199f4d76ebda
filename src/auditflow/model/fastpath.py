"""Event bodies validated without pydantic's per-field machinery, for the usual body only.

Validating an event through the model costs several Python calls per field (the text, time and
`details` validators) on top of pydantic's own work; at intake and again in analysis that was the
largest single cost per event. `fast_events` applies the very same rules (`model.event`,
`model.limits`) by hand to what orjson parsed, in one loop, and builds the events directly. It
accepts a strict subset of what the model accepts and makes equal events; for anything it is not
sure about (an unknown field, a naive or unusual timestamp, an integer orjson may have turned into
a float, text that may hold NUL, any rule broken) it answers None, and the caller validates the
body through the model, which names every problem as before. So a body from anywhere (a client,
another process on the broker) is always checked in full, just cheaply when it is well formed.
`fast_wire_events` applies the same checks and gives the events' wire form instead, for a process
that only passes them on.

A self-check at import compares both paths (and the wire form with the model's serializer) on probe
bodies; if pydantic's instance layout or the model changed so that they differ, the fast path stays off.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, SafeUUID, uuid4

import orjson
from annotated_types import MaxLen
from pydantic import BaseModel

from auditflow.model.event import EVENT_TYPE_PATTERN, MAX_DETAILS_BYTES, Event, Severity
from auditflow.model.limits import MAX_DETAILS_DEPTH, MAX_INT, MIN_INT, EventTimeBounds, timestamp_problem
from auditflow.model.timeutil import format_utc, to_utc

_new = object.__new__
_set = object.__setattr__


def _slot_setter(owner: type, name: str) -> Any:
    """The setter of an attribute that `owner` itself defines (a slot or `__dict__`): what
    `object.__setattr__(instance, name, value)` ends up calling, without looking the name up
    along the instance's type for every event."""
    try:
        setter = vars(owner)[name].__set__
    except (KeyError, AttributeError):  # another layout: the generic way (the self-check decides)
        return lambda instance, value: _set(instance, name, value)
    return setter


# The model's own attributes (pydantic's `BaseModel` slots, and its `__dict__`) and the UUID's
# slots; the self-check below compares the events made through them with the model's.
_set_fields = _slot_setter(BaseModel, "__dict__")
_set_fields_set = _slot_setter(BaseModel, "__pydantic_fields_set__")
_set_extra = _slot_setter(BaseModel, "__pydantic_extra__")
_set_private = _slot_setter(BaseModel, "__pydantic_private__")
_set_uuid_int = _slot_setter(UUID, "int")
_set_uuid_safe = _slot_setter(UUID, "is_safe")

_FIELDS = frozenset(Event.model_fields)
# The text fields' length limits, read from the model so the two cannot drift apart.
_TEXT_LIMITS: dict[str, int] = {
    name: meta.max_length
    for name, info in Event.model_fields.items()
    if info.annotation == (str | None)
    for meta in info.metadata
    if isinstance(meta, MaxLen)
}
_SERVICE = _TEXT_LIMITS["source_service"]
_HOST = _TEXT_LIMITS["server_hostname"]
_USER = _TEXT_LIMITS["user_id"]
_RESULT = _TEXT_LIMITS["action_result"]
_EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN.removeprefix("^").removesuffix("$"))
_UUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_UUID_LENGTH = 36  # of every text `_UUID_PATTERN` matches
_UUID_TEXTS = re.compile(f"(?:{_UUID_PATTERN})+")
# RFC 3339 with an explicit offset and at most microseconds: parsed alike by `fromisoformat` and by
# pydantic. Naive times, other separators and digits past the microsecond take the model's path.
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})")
_SEVERITIES = {member.value: member for member in Severity}
# orjson turns an integer beyond 64 bits into a float, which the model would refuse as an integer:
# a float this large may have been one, so its event takes the model's path.
_FLOAT_LIMIT = float(2**63)
# Event types already found valid (a pure check, so a set of them is safe to share); bounded.
_EVENT_TYPES_SEEN: set[str] = set()
_EVENT_TYPES_KEPT = 4096
_UNSEEN: Any = object()
_SAFE_UNKNOWN = SafeUUID.unknown
_dumps = orjson.dumps
_SIZED_RUN = 64  # details checked together for size (see `_small`)


def fast_events(body: bytes, time_bounds: EventTimeBounds | None = None) -> list[Event] | None:
    """The events of a JSON array (or single object) body, validated as `list[Event]` would be
    with `time_bounds` in the context; None when the model's path must decide."""
    events: list[Event] | None = _checked(body, time_bounds, _EVENTS)
    return events


def fast_wire_events(body: bytes, time_bounds: EventTimeBounds | None = None) -> list[dict[str, Any]] | None:
    """What `fast_events` would make, as the events' wire form instead: for each event a dict of
    its fields in the model's order, with the values `TypeAdapter(list[Event]).dump_json` writes
    (the id as lower-case text, the time as `format_utc` text, the severity's name), so that
    `orjson.dumps` of the list is byte for byte the model's body. The same checks decide; None
    when the model's path must. For a process that only passes events on: no UUID, datetime or
    model object is built per event."""
    rows: list[dict[str, Any]] | None = _checked(body, time_bounds, _WIRE)
    return rows


def fast_event_ids(body: bytes, time_bounds: EventTimeBounds | None = None) -> list[str] | None:
    """The ids of the body's events (lower-case text) when the same checks accept the body as it is
    and every event carries its own id and time; None otherwise (also when the checks would
    answer None). Such a body can be passed on unchanged: whoever decodes it gets the very events
    its wire form would give (`fast_wire_events`), since nothing had to be filled in; so a process
    that only forwards events need not write them again."""
    ids: list[str] | None = _checked(body, time_bounds, _IDS)
    return ids


def _checked(body: bytes, time_bounds: EventTimeBounds | None, form: int) -> Any:
    if not _ENABLED or b"\\u0000" in body:
        # NUL can only be written as an escape in JSON (orjson refuses raw control characters and
        # lone surrogates), so without one no text anywhere in the body holds NUL.
        return None
    try:
        return _events_of(orjson.loads(body), time_bounds, form)
    except (TypeError, ValueError):  # orjson's JSONDecodeError is a ValueError
        # Nothing above should raise (every value's type is checked before it is used); if
        # something does, the model's path still decides, and names the problem.
        return None


# What `_events_of` makes of a body: the events, their wire form, or only the ids (`fast_event_ids`).
_EVENTS, _WIRE, _IDS = 0, 1, 2


def _events_of(parsed: Any, time_bounds: EventTimeBounds | None, form: int = _EVENTS) -> list[Any] | None:
    """Events (or, with `form` _WIRE, their wire form: see `fast_wire_events`; with _IDS, their ids:
    see `fast_event_ids`) or None."""
    if parsed.__class__ is dict:
        parsed = [parsed]
    elif parsed.__class__ is not list:
        return None
    now = datetime.now(UTC) if time_bounds is not None else None
    # The events of one body mostly share a handful of timestamps: each text is checked once
    # (and kept as the datetime, or for the wire form as its canonical text).
    stamps: dict[str, Any] = {}
    # The non-empty details, whose size as JSON is checked for the whole body at once (see `_small`).
    sized: list[dict[str, Any]] = []
    # The ids given, each 36 characters long: their concatenation matches the run of UUID texts
    # exactly when each one matches a UUID text, so one match checks them all.
    ids: list[str] = []
    events: list[Any] = []
    append = events.append
    for raw in parsed:
        if raw.__class__ is not dict or not _FIELDS.issuperset(raw):
            return None
        event_type = raw.get("event_type")
        if event_type.__class__ is not str:
            return None
        if event_type not in _EVENT_TYPES_SEEN:
            if _EVENT_TYPE.fullmatch(event_type) is None:
                return None
            if len(_EVENT_TYPES_SEEN) >= _EVENT_TYPES_KEPT:
                _EVENT_TYPES_SEEN.clear()
            _EVENT_TYPES_SEEN.add(event_type)
        text = raw.get("event_id")
        event_id: Any
        if text is not None:
            if text.__class__ is not str or len(text) != _UUID_LENGTH:
                return None
            ids.append(text)  # their form is checked together, after the loop
            if form != _EVENTS:  # the wire form and the ids alike
                event_id = text.lower()  # `str(UUID(text))`
            else:
                event_id = _new(UUID)
                # Raises ValueError (the model's path) for what is not hexadecimal; other forms
                # that `int` reads are refused by the check after the loop.
                _set_uuid_int(event_id, int(text.replace("-", ""), 16))
                _set_uuid_safe(event_id, _SAFE_UNKNOWN)
        elif "event_id" in raw or form == _IDS:  # an id to fill in: the body cannot go on as it is
            return None
        else:
            event_id = str(uuid4()) if form == _WIRE else uuid4()
        text = raw.get("timestamp")
        timestamp: Any
        if text.__class__ is str:
            timestamp = stamps.get(text, _UNSEEN)
            if timestamp is _UNSEEN:
                timestamp = _timestamp(text, time_bounds, now)
                if form == _WIRE and timestamp is not None:
                    timestamp = format_utc(timestamp)
                stamps[text] = timestamp
            if timestamp is None:
                return None
        elif text is not None or "timestamp" in raw or form == _IDS:
            return None
        else:
            timestamp = to_utc(datetime.now(UTC))
            if form == _WIRE:
                timestamp = format_utc(timestamp)
        source_service = raw.get("source_service")
        server_hostname = raw.get("server_hostname")
        user_id = raw.get("user_id")
        action_result = raw.get("action_result")
        if (
            (source_service is not None and (source_service.__class__ is not str or len(source_service) > _SERVICE))
            or (server_hostname is not None and (server_hostname.__class__ is not str or len(server_hostname) > _HOST))
            or (user_id is not None and (user_id.__class__ is not str or len(user_id) > _USER))
            or (action_result is not None and (action_result.__class__ is not str or len(action_result) > _RESULT))
        ):
            return None
        severity = raw.get("severity")
        if severity is None:
            if "severity" in raw:
                return None
            severity = Severity.INFO
        else:
            severity = _SEVERITIES.get(severity) if severity.__class__ is str else None
            if severity is None:
                return None
        if form == _WIRE:
            severity = severity.value
        details = raw.get("details")
        if details is None:
            if "details" in raw:
                return None
            details = {}
        elif details.__class__ is not dict:
            return None
        elif details:
            # The usual details hold text only: checked here without a call per event.
            for item in details.values():
                if item.__class__ is not str:
                    if not _plain(details, 1):
                        return None
                    break
            sized.append(details)
        if form == _IDS:
            append(event_id)
            continue
        fields = {
            "event_type": event_type,
            "event_id": event_id,
            "timestamp": timestamp,
            "source_service": source_service,
            "server_hostname": server_hostname,
            "user_id": user_id,
            "severity": severity,
            "action_result": action_result,
            "details": details,
        }
        if form == _WIRE:
            append(fields)
            continue
        event = _new(Event)
        _set_fields(event, fields)
        _set_fields_set(event, set(raw))
        _set_extra(event, None)
        _set_private(event, None)
        append(event)
    if ids and _UUID_TEXTS.fullmatch("".join(ids)) is None:
        return None
    return events if _small(sized) else None


def _small(details: list[dict[str, Any]]) -> bool:
    """Each of `details` is at most `MAX_DETAILS_BYTES` as JSON. The usual details are small, so
    one encoding answers for a run of them together; a run too large is encoded item by item."""
    for start in range(0, len(details), _SIZED_RUN):
        run = details[start : start + _SIZED_RUN]
        if len(_dumps(run)) > MAX_DETAILS_BYTES and any(len(_dumps(item)) > MAX_DETAILS_BYTES for item in run):
            return False
    return True


def _timestamp(value: str, time_bounds: EventTimeBounds | None, now: datetime | None) -> datetime | None:
    if _TIMESTAMP.fullmatch(value) is None:
        return None
    try:
        parsed = to_utc(datetime.fromisoformat(value))
    except (ValueError, OverflowError):
        return None
    if timestamp_problem(parsed) is not None:
        return None
    if time_bounds is not None and time_bounds.problem(parsed, now) is not None:
        return None
    return parsed


def _plain(value: dict[str, Any] | list[Any], depth: int) -> bool:
    """`limits.plain_structure` for what orjson parsed, with a stricter float rule (see `_FLOAT_LIMIT`)."""
    if depth > MAX_DETAILS_DEPTH:
        return False
    items: Iterable[Any] = value.values() if isinstance(value, dict) else value
    for item in items:
        kind = item.__class__
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if not MIN_INT <= item <= MAX_INT:
                return False
        elif kind is float:
            if not (math.isfinite(item) and -_FLOAT_LIMIT < item < _FLOAT_LIMIT):
                return False
        elif kind is dict or kind is list:
            if not _plain(item, depth + 1):
                return False
        else:
            return False
    return True


_PROBES = (
    b'[{"event_type":"user_login","event_id":"0b6c3c2e-4a8e-4f2b-9a57-0f1c3e7b9a21",'
    b'"timestamp":"2026-01-02T03:04:05.678912+01:30","source_service":"sshd","server_hostname":"h1",'
    b'"user_id":"alice","severity":"WARNING","action_result":"FAILURE",'
    b'"details":{"a":[1,2.5,{"b":null,"c":true}],"s":"\\u00e9\\ud83d\\ude00"}},'
    b'{"event_type":"x.y-z_1","timestamp":"2026-01-02T03:04:05Z"}]',
    b'{"event_type":"file_modified","event_id":"0B6C3C2E-4A8E-4F2B-9A57-0F1C3E7B9A22",'
    b'"timestamp":"2026-01-02T03:04:05.1Z","details":{}}',
)


def _self_check() -> bool:
    """Both paths make equal events, field for field and type for type, for the probes; the wire
    form is the model's body byte for byte."""
    from pydantic import TypeAdapter

    adapter = TypeAdapter(list[Event])
    try:
        for body in _PROBES:
            fast = _events_of(orjson.loads(body), None)
            parsed = orjson.loads(body)
            reference = adapter.validate_python(parsed if isinstance(parsed, list) else [parsed])
            if fast is None or len(fast) != len(reference):
                return False
            rows = _events_of(orjson.loads(body), None, _WIRE)
            if rows is None or len(rows) != len(reference):
                return False
            for mine, row, theirs in zip(fast, rows, reference, strict=True):
                for name in ("event_id", "timestamp"):  # defaults: a new id, now
                    if name not in mine.model_fields_set:
                        _set(mine, "__dict__", {**mine.__dict__, name: theirs.__dict__[name]})
                        row[name] = str(theirs.event_id) if name == "event_id" else format_utc(theirs.timestamp)
                if list(row) != list(theirs.__dict__):
                    return False
                if (
                    mine != theirs
                    or list(mine.__dict__) != list(theirs.__dict__)
                    or mine.model_fields_set != theirs.model_fields_set
                    or mine.model_dump_json() != theirs.model_dump_json()
                    or any(
                        type(a) is not type(b)
                        for a, b in zip(mine.__dict__.values(), theirs.__dict__.values(), strict=True)
                    )
                ):
                    return False
            if _dumps(rows) != adapter.dump_json(reference):  # the wire form, byte for byte
                return False
    except Exception:  # any layout change: the model's path only
        return False
    return True


_ENABLED = True
_ENABLED = _self_check()
