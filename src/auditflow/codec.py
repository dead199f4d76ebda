"""Message bodies on the broker: a JSON array of events or alerts (a single object is accepted too).

Decoding never fails a whole message for one bad item: valid items are returned and each invalid one
is reported with its index and reason, so the caller can dead-letter just those. The module keeps no
state: items handed over inside one process travel on the body and the delivery (`LocalBody`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import from_json

from auditflow.backends.broker.base import LocalBody
from auditflow.model.alert import Alert
from auditflow.model.event import Event
from auditflow.model.fastpath import fast_events
from auditflow.model.limits import TIME_BOUNDS_CONTEXT, EventTimeBounds
from auditflow.model.timeutil import format_utc

ModelT = TypeVar("ModelT", bound=BaseModel)

_EVENTS = TypeAdapter(list[Event])
_ALERTS = TypeAdapter(list[Alert])


@dataclass(slots=True)
class Rejected:
    index: int | None
    reason: str
    raw: Any


@dataclass(slots=True)
class Decoded(Generic[ModelT]):
    items: list[ModelT]
    rejected: list[Rejected]


def describe_errors(exc: ValidationError, *, prefix: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    """Pydantic errors as `{loc, msg, type}` without echoing the input back; unknown top-level event
    fields get a message that says where custom data belongs."""
    return describe_error_list(
        exc.errors(include_input=False, include_url=False), prefix=prefix, extra_hint="put custom data under 'details'"
    )


def describe_error_list(
    errors: Sequence[Mapping[str, Any]], *, prefix: tuple[str | int, ...] = (), extra_hint: str | None = None
) -> list[dict[str, Any]]:
    """`{loc, msg, type}` for each error (no input echoed), naming an unknown field plainly."""
    described = []
    for err in errors:
        loc = [*prefix, *err.get("loc", ())]
        msg = err.get("msg", "")
        if err.get("type") == "extra_forbidden":
            msg = f"unknown field {loc[-1]!r}" + (f": {extra_hint}" if extra_hint else "")
        described.append({"loc": loc, "msg": msg, "type": err.get("type", "")})
    return described


def _error_text(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in describe_errors(exc))


def encode_events(events: Sequence[Event], *, local: bool = False) -> bytes:
    """`local`: the body is consumed in this process, so it carries its events (see `LocalBody`).
    Such a body is only read back when the broker did not hand them over, so it is encoded by
    orjson straight from the validated fields (about ten times cheaper; timestamps carry
    microseconds, which parse back to the same value) instead of in the canonical wire format that
    other processes read."""
    items = list(events)
    if local:
        return LocalBody(_fast_events(items), items)
    return _wire_events(items)


# Anything orjson would write differently from the model's serializer (a datetime, a dataclass or
# a subclass of a built-in type inside `details`) raises instead, and the model's serializer writes
# the body. Plain JSON values, UUIDs and the severity enum come out byte for byte the same.
_WIRE_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def _wire_events(items: list[Event]) -> bytes:
    """The canonical wire format (`TypeAdapter(list[Event]).dump_json`), written by orjson from
    the validated fields with each distinct timestamp formatted once: the events of one request
    mostly share a few timestamps, and the model's serializer costs several times as much."""
    stamps: dict[datetime, str] = {}
    rows: list[dict[str, Any]] = []
    append = rows.append
    try:
        for item in items:
            fields = item.__dict__
            timestamp = fields["timestamp"]
            text = stamps.get(timestamp)
            if text is None:
                text = stamps[timestamp] = format_utc(timestamp)
            append({**fields, "timestamp": text, "severity": fields["severity"].value})
        return orjson.dumps(rows, option=_WIRE_OPTIONS)
    except (TypeError, AttributeError, KeyError):
        # Not the validated layout (details holding Python objects, an event built without its
        # fields): the model's serializer decides, and names what it cannot write.
        return _EVENTS.dump_json(items)


def _fast_events(items: list[Event]) -> bytes:
    try:
        return orjson.dumps([item.__dict__ for item in items], option=orjson.OPT_UTC_Z)
    except TypeError:  # details holding Python objects that only the model's serializer knows
        return _EVENTS.dump_json(items)


def encode_alerts(alerts: Sequence[Alert], *, local: bool = False) -> bytes:
    """`local`: the body is consumed in this process, so it carries its alerts (see `LocalBody`)."""
    items = list(alerts)
    body = _ALERTS.dump_json(items)
    return LocalBody(body, items) if local else body


def _decode(
    body: bytes, adapter: TypeAdapter[list[ModelT]], model: type[ModelT], context: dict[str, Any] | None = None
) -> Decoded[ModelT]:
    try:
        # The usual body, a valid array, in one pass of the validator's own JSON parser: no
        # intermediate Python objects. Anything else takes the slow path that explains itself.
        return Decoded(adapter.validate_json(body, context=context), [])
    except ValidationError:
        pass
    try:
        # The validator's parser again: an integer past 64 bits stays an integer and is refused by
        # name (orjson would make it a float), and NaN is not JSON.
        parsed = from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        return Decoded([], [Rejected(None, f"malformed JSON: {exc}", body[:1024].decode("utf-8", "replace"))])
    if isinstance(parsed, dict):
        parsed = [parsed]
    if not isinstance(parsed, list):
        return Decoded([], [Rejected(None, "body must be a JSON object or array", parsed)])
    try:
        return Decoded(adapter.validate_python(parsed, context=context), [])
    except ValidationError:
        pass  # fall back to item by item so one bad item does not sink the rest
    items: list[ModelT] = []
    rejected: list[Rejected] = []
    for index, raw in enumerate(parsed):
        try:
            items.append(model.model_validate(raw, context=context))
        except ValidationError as exc:
            rejected.append(Rejected(index, _error_text(exc), raw))
    return Decoded(items, rejected)


def _handed_over(known: object, model: type[ModelT]) -> list[ModelT] | None:
    """The items an in-process publisher handed over, if they are what this decoder would produce."""
    if isinstance(known, list) and all(map(isinstance, known, repeat(model))):
        return known
    return None


def decode_events(body: bytes, *, known: object = None, time_bounds: EventTimeBounds | None = None) -> Decoded[Event]:
    """`known`: the delivery's handed-over items (`Delivery.decoded`), used instead of the bytes
    (they were validated by the same rules at intake). `time_bounds`: event times to accept besides
    the model's fixed range."""
    items = _handed_over(known, Event)
    if items is None:
        # The usual body through the hand-written checks; anything unusual through the model.
        items = fast_events(body, time_bounds)
    if items is not None:
        return Decoded(items, [])
    return _decode(body, _EVENTS, Event, {TIME_BOUNDS_CONTEXT: time_bounds} if time_bounds is not None else None)


def decode_alerts(body: bytes, *, known: object = None) -> Decoded[Alert]:
    """`known`: the delivery's handed-over items (`Delivery.decoded`), used instead of the bytes."""
    items = _handed_over(known, Alert)
    return Decoded(items, []) if items is not None else _decode(body, _ALERTS, Alert)
