"""A condition specialised to one event type decides every event of that type as the whole condition."""

from __future__ import annotations

from typing import Any

import pytest

from auditflow.model import Event
from auditflow.rules.conditions import always, compile_where, specialise

CONDITIONS: list[dict[str, Any]] = [
    {"event_type": "user_login", "action_result": "FAILURE"},
    {"event_type": "user_login", "action_result": "FAILURE", "details.source.ip": {"exists": True}},
    {"event_type": {"in": ["user_created", "account_created"]}},
    {"event_type": {"glob": "user_*"}, "user_id": {"startswith": "adm"}},
    {"event_type": {"not": {"equals": "user_login"}}, "any": [{"user_id": "root"}, {"action_result": "SUCCESS"}]},
    {"event_type": {"equals_field": "user_id"}},
    {"action_result": "SUCCESS", "not": {"event_type": "user_login"}},
    {"all": [{"event_type": "user_login"}, {"user_id": "root"}, {"action_result": "SUCCESS"}, {"user_id": "root"}]},
]
EVENTS = [
    Event(event_type=event_type, user_id=user, action_result=result, details=details)
    for event_type in ("user_login", "user_created", "file_modified", "root")
    for user in ("root", "admin", None)
    for result in ("SUCCESS", "FAILURE")
    for details in ({}, {"source": {"ip": "10.0.0.1"}})
]


@pytest.mark.parametrize("raw", CONDITIONS)
def test_a_specialised_condition_agrees_with_the_whole_one(raw: dict[str, Any]) -> None:
    condition = compile_where(raw)
    for event_type in {event.event_type for event in EVENTS}:
        test = specialise(condition, event_type)
        for event in (e for e in EVENTS if e.event_type == event_type):
            assert (test is not None and test(event)) == condition.test(event), (raw, event)


def test_specialising_drops_the_event_type_entry() -> None:
    assert specialise(compile_where({"event_type": "user_login"}), "user_login") is always
    assert specialise(compile_where({"event_type": "user_login", "user_id": "x"}), "file_modified") is None
    unpinned = compile_where({"user_id": "root"})
    assert specialise(unpinned, "user_login") is unpinned.test
    referring = compile_where({"event_type": {"equals_field": "user_id"}})
    assert specialise(referring, "user_login") is referring.test


@pytest.mark.parametrize(
    ("field", "value"),
    [("user_id", "root"), ("action_result", "SUCCESS"), ("severity", "ERROR"), ("event_type", "user_login")],
)
def test_a_top_level_equality_agrees_with_the_equals_operator(field: str, value: str) -> None:
    short, spelled = compile_where({field: value}), compile_where({field: {"equals": value}})
    events = [*EVENTS, Event(event_type="x", severity="ERROR"), Event(event_type="x", severity="INFO")]
    assert [short.test(e) for e in events] == [spelled.test(e) for e in events]
    assert any(short.test(e) for e in events)
