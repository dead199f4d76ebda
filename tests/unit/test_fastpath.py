"""The hand-written event checks (`model.fastpath`) against the model: whatever the fast path
accepts, the model accepts too and makes an equal event (same values, types, field order and set
fields); whatever it is not sure about it leaves to the model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json

from auditflow.model.event import Event
from auditflow.model.fastpath import fast_event_ids, fast_events, fast_wire_events
from auditflow.model.limits import TIME_BOUNDS_CONTEXT, EventTimeBounds

_EVENTS = TypeAdapter(list[Event])
_BOUNDS = EventTimeBounds.from_seconds(max_future=300, max_age=86400)
_NOW = datetime.now(UTC).replace(microsecond=0)
_TS = (_NOW - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S")
_ID = "0b6c3c2e-4a8e-4f2b-9a57-0f1c3e7b9a21"


def _model(body: bytes, bounds: EventTimeBounds | None) -> list[Event]:
    context = {TIME_BOUNDS_CONTEXT: bounds} if bounds is not None else None
    parsed = from_json(body, allow_inf_nan=False)  # the model's own parser, as the codec's slow path
    return _EVENTS.validate_python(parsed if isinstance(parsed, list) else [parsed], context=context)


def _assert_same(fast: list[Event], model: list[Event]) -> None:
    assert len(fast) == len(model)
    for mine, theirs in zip(fast, model, strict=True):
        assert mine.model_fields_set == theirs.model_fields_set
        assert list(mine.__dict__) == list(theirs.__dict__)
        for name, value in theirs.__dict__.items():
            if name in theirs.model_fields_set:  # defaults (a new id, now) differ by nature
                assert type(mine.__dict__[name]) is type(value), name
                assert mine.__dict__[name] == value, name
        assert mine.model_dump_json(exclude={"event_id", "timestamp"}) == theirs.model_dump_json(
            exclude={"event_id", "timestamp"}
        )


def _assert_same_wire(body: bytes, bounds: EventTimeBounds | None) -> None:
    """The wire form is accepted exactly when the events are, and `orjson.dumps` of it is the
    model's own body for the model's events (a generated id and time taken over from the row)."""
    rows = fast_wire_events(body, bounds)
    events = fast_events(body, bounds)
    ids = fast_event_ids(body, bounds)
    assert (rows is None) == (events is None)
    if rows is None:
        assert ids is None
        return
    # The body goes on as sent exactly when nothing had to be filled in, and then reads back as
    # the very events of its wire form.
    parsed = orjson.loads(body)
    complete = all(
        "event_id" in item and "timestamp" in item for item in (parsed if isinstance(parsed, list) else [parsed])
    )
    assert (ids is not None) == complete
    if ids is not None:
        assert ids == [row["event_id"] for row in rows]
        assert fast_events(body, bounds) == fast_events(orjson.dumps(rows), bounds)
    model = _model(body, bounds)
    assert len(rows) == len(model)
    filled = []
    for row, event in zip(rows, model, strict=True):
        update: dict[str, Any] = {}
        if "event_id" not in event.model_fields_set:
            update["event_id"] = UUID(row["event_id"])
            assert str(update["event_id"]) == row["event_id"]
        if "timestamp" not in event.model_fields_set:
            update["timestamp"] = datetime.fromisoformat(row["timestamp"])
        filled.append(event.model_copy(update=update))
    assert orjson.dumps(rows) == _EVENTS.dump_json(filled)


_FULL = {
    "event_type": "user_login",
    "event_id": _ID,
    "timestamp": _TS + ".123456Z",
    "source_service": "sshd",
    "server_hostname": "h1",
    "user_id": "alice",
    "severity": "WARNING",
    "action_result": "FAILURE",
    "details": {"n": [1, -2, 2.5, {"deep": None, "t": True}], "s": "é😀", "i": 2**63 - 1},
}


@pytest.mark.parametrize(
    "items",
    [
        [_FULL],
        _FULL,  # a single object
        [{"event_type": "x.y-z_0"}],  # defaults for everything else
        [{**_FULL, "timestamp": _TS + "+01:30"}, {**_FULL, "timestamp": _TS + ".1-00:00"}],
        [{**_FULL, "event_id": _ID.upper(), "source_service": None, "details": {}}],
        [{**_FULL, "user_id": "u" * 255, "action_result": "r" * 64}],
    ],
)
def test_the_usual_bodies_make_the_models_events(items: Any) -> None:
    body = orjson.dumps(items)
    fast = fast_events(body, _BOUNDS)
    assert fast is not None
    _assert_same(fast, _model(body, _BOUNDS))
    assert fast_wire_events(body, _BOUNDS) is not None
    _assert_same_wire(body, _BOUNDS)


@pytest.mark.parametrize(
    ("change", "model_refuses"),
    [
        ({"extra": 1}, True),
        ({"event_type": "User Login"}, True),
        ({"event_type": "login\n"}, True),
        ({"event_type": ["x"]}, True),
        ({"event_id": None}, True),
        ({"event_id": "0b6c3c2e4a8e4f2b9a570f1c3e7b9a21"}, False),  # other spellings: the model decides
        ({"event_id": {"a": 1}}, True),
        ({"timestamp": _TS}, False),  # naive: the model takes it as UTC
        ({"timestamp": _TS + ".123456789Z"}, False),
        ({"timestamp": _TS.replace("T", " ") + "Z"}, False),
        ({"timestamp": 1_700_000_000}, True),
        ({"timestamp": [_TS]}, True),
        ({"timestamp": "1969-12-31T23:59:59Z"}, True),
        ({"timestamp": (_NOW + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}, True),
        ({"timestamp": (_NOW - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")}, True),
        ({"source_service": "s" * 129}, True),
        ({"user_id": 42}, True),
        ({"user_id": "nul\u0000"}, True),
        ({"severity": "info"}, True),
        ({"severity": ["INFO"]}, True),
        ({"details": None}, True),
        ({"details": [1]}, True),
        ({"details": {"big": 2**63}}, True),
        ({"details": {"k\u0000": 1}}, True),
        ({"details": {"x": "y" * (64 * 1024)}}, True),
        ({"details": {"f": 1e300}}, False),  # a float this large may have been a huge integer
    ],
)
def test_anything_unusual_is_left_to_the_model(change: dict[str, Any], model_refuses: bool) -> None:
    body = orjson.dumps([_FULL, {**_FULL, **change}])
    assert fast_events(body, _BOUNDS) is None
    assert fast_wire_events(body, _BOUNDS) is None
    if model_refuses:
        with pytest.raises(ValidationError):
            _model(body, _BOUNDS)
    else:
        _model(body, _BOUNDS)


def test_details_are_sized_each_on_its_own() -> None:
    # Together far past the limit, each one under it: accepted, as the model does.
    near = {"x": "y" * (60 * 1024)}
    body = orjson.dumps([{**_FULL, "details": near} for _ in range(3)])
    fast = fast_events(body, _BOUNDS)
    assert fast is not None
    _assert_same(fast, _model(body, _BOUNDS))
    # One over the limit among many small ones (and after them): the model decides, and refuses.
    items = [{**_FULL, "details": {"n": str(i)}} for i in range(200)]
    items.insert(150, {**_FULL, "details": {"x": "y" * (64 * 1024)}})
    body = orjson.dumps(items)
    assert fast_events(body, _BOUNDS) is None
    assert fast_wire_events(body, _BOUNDS) is None
    with pytest.raises(ValidationError):
        _model(body, _BOUNDS)


@pytest.mark.parametrize(
    "details",
    [{"a": "text", "big": 2**63}, {"a": "text", "b": {"c": [None, 2**64 - 1]}}, {"a": "text", "f": 1e300}],
)
def test_details_past_their_text_are_still_walked(details: dict[str, Any]) -> None:
    body = orjson.dumps([_FULL, {**_FULL, "details": details}])
    assert fast_events(body, _BOUNDS) is None
    assert fast_wire_events(body, _BOUNDS) is None


@pytest.mark.parametrize(
    "event_id",
    [
        "0x" + _ID[2:],  # `int(..., 16)` reads these; a UUID text they are not
        _ID[:4] + "_" + _ID[5:],
        " " + _ID[1:],
        _ID[:8] + "0" + _ID[9:-1] + "-",  # a hyphen out of place, the length right
        _ID[:-1] + "\u0663",  # a digit, but not an ASCII one
        _ID[:-1] + "g",
    ],
)
def test_ids_of_the_right_length_but_not_uuid_text_are_left_to_the_model(event_id: str) -> None:
    assert len(event_id) == len(_ID)
    body = orjson.dumps([_FULL, {**_FULL, "event_id": event_id}, _FULL])
    assert fast_events(body, _BOUNDS) is None
    assert fast_wire_events(body, _BOUNDS) is None
    with pytest.raises(ValidationError):
        _model(body, _BOUNDS)


def test_nesting_and_huge_integers_are_left_to_the_model() -> None:
    deep: Any = 1
    for _ in range(33):  # details itself is the first level
        deep = {"d": deep}
    for body in (
        orjson.dumps([{"event_type": "a", "details": deep}]),
        b'[{"event_type": "a", "details": {"n": 18446744073709551616}}]',
        b'[{"event_type": "a", "details": {"n": -9223372036854775809}}]',
        b'[{"event_type": "a", "details": {"n": NaN}}]',
        b'[{"event_type": "a", "user_id": "\\ud800"}]',
        b"[1]",
        b"42",
        b"{not json",
    ):
        assert fast_events(body, None) is None
        assert fast_wire_events(body, None) is None
        with pytest.raises((ValidationError, ValueError)):
            _model(body, None)


_text = st.one_of(st.none(), st.text(max_size=8), st.integers(), st.booleans())
_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=6)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
_items = st.fixed_dictionaries(
    {"event_type": st.one_of(st.just("user_login"), st.text(max_size=5))},
    optional={
        "event_id": st.one_of(st.just(_ID), st.uuids().map(str), st.text(max_size=4), st.none()),
        "timestamp": st.one_of(
            st.just(_TS + "Z"),
            st.datetimes(min_value=_NOW.replace(tzinfo=None) - timedelta(minutes=90), timezones=st.just(UTC)).map(
                lambda d: d.isoformat()
            ),
            st.text(max_size=5),
        ),
        "source_service": _text,
        "user_id": _text,
        "severity": st.one_of(st.sampled_from(["INFO", "ERROR", "CRITICAL", "warning"]), st.none()),
        "details": st.one_of(st.dictionaries(st.text(max_size=4), _values, max_size=4), _values),
        "unknown": st.integers(),
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_items, min_size=1, max_size=3))
def test_what_the_fast_path_accepts_the_model_accepts_alike(items: list[dict[str, Any]]) -> None:
    try:
        body = orjson.dumps(items)
    except TypeError:  # integers orjson cannot write: not a body anyone sends through it
        return
    _assert_same_wire(body, _BOUNDS)
    fast = fast_events(body, _BOUNDS)
    if fast is None:
        return
    _assert_same(fast, _model(body, _BOUNDS))
