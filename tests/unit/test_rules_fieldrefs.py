"""The field operators (`equals_field`, `contains_field`, `startswith_field`, `endswith_field`):
a field compared with another field of the same event."""

from __future__ import annotations

from typing import Any

import pytest

from auditflow.model import Event
from auditflow.rules.conditions import ConditionError, compile_where


def event(user_id: str | None = "bob", **details: Any) -> Event:
    return Event(event_type="user_login", user_id=user_id, details=details)


def holds(where: dict[str, Any], e: Event) -> bool:
    return compile_where(where)(e)


@pytest.mark.parametrize(
    ("spec", "details", "expected"),
    [
        ({"equals_field": "user_id"}, {"x": "bob"}, True),
        ({"equals_field": "user_id"}, {"x": "Bob"}, False),  # case-sensitive, as Sigma's fieldref
        ({"equals_field": "user_id"}, {"x": "bobby"}, False),
        ({"equals_field": "user_id"}, {}, False),  # the field is missing
        ({"equals_field": "user_id"}, {"x": None}, False),
        ({"equals_field": "details.y"}, {"x": "bob"}, False),  # the other field is missing
        ({"equals_field": "details.y"}, {"x": None, "y": None}, False),  # null equals nothing
        ({"equals_field": "details.y"}, {"x": 1000, "y": 1000}, True),
        ({"equals_field": "details.y"}, {"x": 1000, "y": 1000.0}, True),
        ({"equals_field": "details.y"}, {"x": 1000, "y": "1000"}, False),  # as `equals`: a number is not its text
        ({"equals_field": "details.y"}, {"x": True, "y": 1}, False),  # booleans only equal booleans
        ({"equals_field": "details.y"}, {"x": False, "y": False}, True),
        ({"equals_field": "details.y"}, {"x": {"a": 1}, "y": {"a": 1}}, False),  # objects equal nothing
        ({"equals_field": "details.y"}, {"x": ["a", "bob"], "y": "bob"}, True),  # one element
        ({"equals_field": "details.y"}, {"x": "bob", "y": ["a", "bob"]}, True),
        ({"equals_field": "details.y"}, {"x": ["a", "b"], "y": ["c", "b"]}, True),  # one pair
        ({"equals_field": "details.y"}, {"x": ["a", "b"], "y": ["c", "d"]}, False),
        ({"equals_field": "details.o.name"}, {"x": "bob", "o": {"name": "bob"}}, True),
        ({"startswith_field": "user_id"}, {"x": "bobby"}, True),
        ({"startswith_field": "user_id"}, {"x": "abob"}, False),
        ({"endswith_field": "user_id"}, {"x": "abob"}, True),
        ({"endswith_field": "user_id"}, {"x": "bobby"}, False),
        ({"contains_field": "user_id"}, {"x": "a bob b"}, True),
        ({"contains_field": "user_id"}, {"x": "a BOB b"}, False),
        ({"contains_field": "user_id", "ignore_case": True}, {"x": "a BOB b"}, True),
        ({"endswith_field": "details.y", "ignore_case": True}, {"x": "/HOME/Bob", "y": "/bob"}, True),
        ({"contains_field": "details.y"}, {"x": "1000", "y": 1000}, False),  # substrings of strings only
        ({"contains_field": "user_id", "startswith": "a"}, {"x": "a bob"}, True),  # with other operators
        ({"contains_field": "user_id", "startswith": "a"}, {"x": "b bob"}, False),
        ({"contains_field": "user_id", "startswith": "A", "ignore_case": True}, {"x": "a BOB"}, True),
        ({"not": {"equals_field": "user_id"}}, {"x": "alice"}, True),
        ({"not": {"equals_field": "user_id"}}, {"x": "bob"}, False),
        ({"any": [{"equals_field": "user_id"}, {"equals": "root"}]}, {"x": "root"}, True),
        ({"any": [{"equals_field": "user_id"}, {"equals": "root"}]}, {"x": "bob"}, True),
        ({"any": [{"equals_field": "user_id"}, {"equals": "root"}]}, {"x": "alice"}, False),
        ({"all": [{"startswith_field": "user_id"}, {"not": {"equals_field": "user_id"}}]}, {"x": "bobby"}, True),
        ({"all": [{"startswith_field": "user_id"}, {"not": {"equals_field": "user_id"}}]}, {"x": "bob"}, False),
    ],
)
def test_a_field_compared_with_another(spec: dict[str, Any], details: dict[str, Any], expected: bool) -> None:
    assert holds({"details.x": spec}, event(**details)) is expected


def test_a_missing_referenced_top_level_field_does_not_match() -> None:
    assert holds({"details.x": {"equals_field": "user_id"}}, event("bob", x="bob"))
    assert not holds({"details.x": {"equals_field": "user_id"}}, event(None, x="bob"))
    assert not holds({"details.x": {"not": {"exists": True}, "equals_field": "user_id"}}, event(None))


def test_field_operators_nested_in_whole_condition_combinators() -> None:
    where = {"any": [{"details.x": {"equals_field": "user_id"}}, {"not": {"details.y": {"equals_field": "user_id"}}}]}
    assert holds(where, event(x="bob", y="bob"))
    assert holds(where, event(x="alice", y="alice"))
    assert not holds(where, event(x="alice", y="bob"))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"equals_field": 3}, "details.x.equals_field: expected the path of another field of the event"),
        ({"equals_field": ""}, "details.x.equals_field: expected the path of another field of the event"),
        ({"equals_field": ["user_id"]}, "details.x.equals_field: expected the path of another field of the event"),
        ({"startswith_field": "hostname"}, "details.x.startswith_field: unknown field 'hostname'"),
        ({"equals_field": "user_id", "ignore_case": True}, "details.x.ignore_case: applies to contains, startswith"),
        ({"contains_field": "user_id", "ignore_case": "yes"}, "details.x.ignore_case: expected true or false"),
        ({"any": [{"equals_field": "user_id"}, {"nearly": 1}]}, "details.x.any[1].nearly: unknown operator 'nearly'"),
        ({"not": {"equals_field": "user_id"}, "gt": "a"}, "details.x.gt: expected a number"),
    ],
)
def test_malformed_field_operators_name_their_place(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ConditionError) as raised:
        compile_where({"details.x": spec})
    assert str(raised.value).startswith(message)
