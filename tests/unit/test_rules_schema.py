"""Rule schema: condition operators, durations, templates and the errors a rule author sees."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from auditflow.model import Event, Severity
from auditflow.rules import check_files
from auditflow.rules.conditions import ConditionError, compile_where
from auditflow.rules.fields import format_duration, group_value, make_getter, parse_duration
from auditflow.rules.schema import MatchRule, SequenceRule, ThresholdRule
from auditflow.rules.template import parse_template


def ev(**fields: Any) -> Event:
    fields.setdefault("event_type", "user_login")
    return Event.model_validate(fields)


@pytest.mark.parametrize(
    ("where", "event", "expected"),
    [
        ({"action_result": "FAILURE"}, ev(action_result="FAILURE"), True),
        ({"action_result": "FAILURE"}, ev(action_result="SUCCESS"), False),
        ({"action_result": {"equals": "FAILURE"}}, ev(action_result="FAILURE"), True),
        ({"severity": {"in": ["ERROR", "CRITICAL"]}}, ev(severity="ERROR"), True),
        ({"severity": {"in": ["ERROR", "CRITICAL"]}}, ev(severity="INFO"), False),
        ({"details.resource": {"glob": "/etc/sudoers.d/*"}}, ev(details={"resource": "/etc/sudoers.d/x"}), True),
        ({"details.resource": {"glob": "/etc/sudoers.d/*"}}, ev(details={"resource": "/ETC/sudoers.d/x"}), False),
        ({"details.resource": {"glob": ["/a/*", "/b/*"]}}, ev(details={"resource": "/b/c"}), True),
        ({"details.cmd": {"regex": r"rm\s+-rf"}}, ev(details={"cmd": "sudo rm  -rf /"}), True),
        ({"details.cmd": {"regex": r"rm\s+-rf"}}, ev(details={"cmd": 42}), False),
        ({"details.cmd": {"exists": True}}, ev(details={"cmd": "x"}), True),
        ({"details.cmd": {"exists": True}}, ev(details={}), False),
        ({"details.cmd": {"exists": False}}, ev(details={}), True),
        ({"details.port": {"gt": 1000, "lte": 2000}}, ev(details={"port": 1500}), True),
        ({"details.port": {"gt": 1000}}, ev(details={"port": 1000}), False),
        ({"details.port": {"gte": 1000, "lt": 1001}}, ev(details={"port": 1000}), True),
        ({"details.port": {"gt": 1}}, ev(details={"port": "22"}), False),  # non-numeric never matches
        ({"details.port": {"gt": 0}}, ev(details={"port": True}), False),
        ({"details.a.b": 1}, ev(details={"a": {"b": 1}}), True),
        ({"details.a.b": 1}, ev(details={"a": 1}), False),
        ({"details.flag": True}, ev(details={"flag": 1}), False),  # true means the boolean
        ({"details.n": 1}, ev(details={"n": True}), False),
        ({"details.n": {"in": [1, 2]}}, ev(details={"n": True}), False),
        ({"details.n": {"in": [True]}}, ev(details={"n": True}), True),
        ({"details.n": {"in": ["a"]}}, ev(details={"n": {"x": 1}}), False),
        ({"details.groups": {"in": ["sudo", "wheel"]}}, ev(details={"groups": ["users", "wheel"]}), True),
        ({"details.groups": "sudo"}, ev(details={"groups": ["users"]}), False),
        ({"details.expected": {"not": True}}, ev(details={"expected": False}), True),
        ({"details.expected": {"not": True}}, ev(details={}), True),
        ({"details.expected": {"not": True}}, ev(details={"expected": True}), False),
        ({"not": {"user_id": "root"}}, ev(user_id="alice"), True),
        ({"not": {"user_id": "root"}}, ev(user_id="root"), False),
        ({"any": [{"user_id": "a"}, {"user_id": "b"}]}, ev(user_id="b"), True),
        ({"any": [{"user_id": "a"}, {"user_id": "b"}]}, ev(user_id="c"), False),
        ({"all": [{"user_id": "a"}, {"server_hostname": "h"}]}, ev(user_id="a", server_hostname="h"), True),
        ({"all": [{"user_id": "a"}, {"server_hostname": "h"}]}, ev(user_id="a", server_hostname="x"), False),
        ({"user_id": "a", "server_hostname": "h"}, ev(user_id="a", server_hostname="x"), False),
        ({"details.p": {"any": [{"glob": "/a*"}, {"equals": "/b"}]}}, ev(details={"p": "/b"}), True),
        ({"details.p": {"all": [{"glob": "/a*"}, {"not": "/ab"}]}}, ev(details={"p": "/ab"}), False),
        ({"user_id": None}, ev(), True),
    ],
)
def test_operators(where: dict[str, Any], event: Event, expected: bool) -> None:
    assert compile_where(where)(event) is expected


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ({}, "non-empty mapping"),
        ({"user": "x"}, "unknown field 'user'"),
        ({"details.": "x"}, "empty key"),
        ({"timestamp": "x"}, "unknown field 'timestamp'"),
        ({"user_id": ["a", "b"]}, "write `in: [...]`"),
        ({"user_id": {"like": "a"}}, "user_id.like: unknown operator 'like'"),
        ({"user_id": {}}, "at least one operator"),
        ({"details.c": {"regex": "("}}, "details.c.regex: invalid regular expression '('"),
        ({"details.c": {"regex": "(a+)+$"}}, "catastrophic"),
        ({"details.c": {"regex": r"(\w*x)*"}}, "catastrophic"),
        ({"details.c": {"regex": "a" * 600}}, "longer than"),
        ({"details.c": {"gt": "5"}}, "expected a number"),
        ({"details.c": {"exists": "yes"}}, "expected true or false"),
        ({"details.c": {"in": []}}, "non-empty list"),
        ({"details.c": {"in": [{"a": 1}]}}, "scalars only"),
        ({"details.c": {"glob": ""}}, "non-empty string"),
        ({"details.c": {"equals": {"a": 1}}}, "expected a scalar"),
        ({"any": [{"user_id": "a"}, {"nope": 1}]}, "any[1].nope: unknown field"),
        ({"any": []}, "non-empty list"),
    ],
)
def test_invalid_conditions_name_their_path(where: dict[str, Any], message: str) -> None:
    with pytest.raises(ConditionError) as info:
        compile_where(where)
    assert message in str(info.value)


def test_bounded_repetition_of_a_group_is_allowed() -> None:
    condition = compile_where({"details.ip": {"regex": r"^(\d+\.){3}\d+$"}})
    assert condition(ev(details={"ip": "10.0.0.1"}))


@pytest.mark.parametrize(
    ("where", "pinned"),
    [
        ({"event_type": "a"}, {"a"}),
        ({"event_type": {"in": ["a", "b"]}, "user_id": "x"}, {"a", "b"}),
        ({"event_type": {"equals": "a"}}, {"a"}),
        ({"event_type": {"glob": "a*"}}, None),
        ({"user_id": "x"}, None),
    ],
)
def test_event_type_pin_is_detected_for_the_index(where: dict[str, Any], pinned: set[str] | None) -> None:
    assert compile_where(where).event_types == (frozenset(pinned) if pinned is not None else None)


@pytest.mark.parametrize(
    "path", ["user_id", "server_hostname", "event_id", "severity", "details.a", "details.a.b.c", "details.missing.x"]
)
def test_getters_agree_with_event_field_value(path: str) -> None:
    event = ev(user_id="u", server_hostname="h", details={"a": {"b": {"c": 3}}})
    expected = event.field_value(path)
    assert make_getter(path)(event) == (str(expected) if path == "event_id" else expected)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("60s", 60), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("2d", 172800), ("500ms", 0.5), (90, 90), ("0", 0)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["abc", "5 minutes", "-1", -5, True, "", "1.5h", None])
def test_invalid_durations(text: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10**9))
def test_formatted_durations_parse_back(ms: int) -> None:
    value = timedelta(milliseconds=ms)
    assert parse_duration(format_duration(value)) == value


def base(**overrides: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"id": "r1", "name": "R", "severity": "WARNING", "kind": "match", "where": {"user_id": "x"}}
    rule.update(overrides)
    return rule


def error_fields(exc: ValidationError) -> dict[str, str]:
    return {".".join(map(str, e["loc"])): e["msg"] for e in exc.errors()}


def test_defaults_and_lowercase_severity() -> None:
    rule = MatchRule.model_validate(base(severity="critical"))
    assert rule.enabled
    assert rule.suppress_for == timedelta(minutes=5)
    assert rule.severity == "CRITICAL"
    assert rule.group_by == ()
    assert rule.model_dump(mode="json")["where"] == {"user_id": "x"}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"id": "Bad Id"}, "id"),
        ({"severity": "LOUD"}, "severity"),
        ({"suppress_for": "soon"}, "suppress_for"),
        ({"group_by": ["nope"]}, "group_by.0"),
        ({"colour": "red"}, "colour"),
        ({"description": "{details[0]}"}, "description"),
        ({"description": "{user_id.__class__}"}, "description"),
        ({"description": "unbalanced {"}, "description"),
        ({"where": {"user_id": {"regex": "["}}}, "where"),
    ],
)
def test_schema_errors_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        MatchRule.model_validate(base(**overrides))
    assert field in error_fields(info.value)


def test_a_distinct_count_names_an_event_field() -> None:
    rule = ThresholdRule.model_validate(base(kind="threshold", count=3, window="10m", distinct="details.user"))
    assert rule.distinct == "details.user"
    assert ThresholdRule.model_validate(base(kind="threshold", count=3, window="10m")).distinct is None
    for path, message in [("usr", "unknown field 'usr'"), ("details.", "empty key"), ("timestamp", "unknown field")]:
        with pytest.raises(ValidationError) as info:
            ThresholdRule.model_validate(base(kind="threshold", count=3, window="10m", distinct=path))
        assert list(error_fields(info.value)) == ["distinct"]
        assert message in str(info.value)
    with pytest.raises(ValidationError) as info:
        MatchRule.model_validate(base(distinct="user_id"))  # only thresholds count
    assert "distinct" in error_fields(info.value)


def test_threshold_and_sequence_requirements() -> None:
    with pytest.raises(ValidationError) as info:
        ThresholdRule.model_validate(base(kind="threshold", count=0, window="0s"))
    assert set(error_fields(info.value)) == {"count", "window"}
    with pytest.raises(ValidationError) as info:
        SequenceRule.model_validate(base(kind="sequence", where=None, steps=[{"where": {"user_id": "a"}}], window=60))
    assert {"steps", "where"} <= set(error_fields(info.value))
    sequence = base(kind="sequence", window=60)
    del sequence["where"]
    sequence["steps"] = [{"where": {"event_type": "a"}, "count": 2}, {"where": {"event_type": "b"}}]
    rule = SequenceRule.model_validate(sequence)
    assert rule.event_types == frozenset({"a", "b"})
    assert rule.steps[1].count == 1
    assert rule.ordered  # steps in order unless the rule says otherwise
    assert not SequenceRule.model_validate({**sequence, "ordered": False}).ordered
    with pytest.raises(ValidationError) as info:
        SequenceRule.model_validate({**sequence, "ordered": "sometimes"})
    assert list(error_fields(info.value)) == ["ordered"]
    with pytest.raises(ValidationError) as info:
        ThresholdRule.model_validate(base(kind="threshold", count=3, window="10m", ordered=False))
    assert list(error_fields(info.value)) == ["ordered"]  # only sequences have an order


def test_template_renders_paths_without_evaluating_them() -> None:
    template = parse_template("{user_id} changed {details.resource} ({occurrences}x) {{x}} [{server_hostname:>3}]")
    values = {"user_id": "bob", "details.resource": "/etc/shadow", "occurrences": 3}
    assert template.render_map(values) == "bob changed /etc/shadow (3x) {x} [   ]"


@pytest.mark.parametrize("text", ["{0}", "{}", "{a[0]}", "{user_id!r}", "{user_id:{width}}", "{nope}"])
def test_unsafe_or_unknown_placeholders_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="template"):
        parse_template(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, None),
        ("web-1", "web-1"),
        (Severity.ERROR, "ERROR"),
        (True, "true"),
        (22, "22"),
        (1.5, "1.5"),
        (["b", "a"], '["b","a"]'),
        ({"b": 1, "a": 2}, '{"a":2,"b":1}'),
    ],
)
def test_group_values_are_stable_strings(value: object, text: str | None) -> None:
    assert group_value(value) == text


def sequence_rule(*step_groups: list[str] | None, group_by: Any = ("server_hostname", "user_id")) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    for index, fields in enumerate(step_groups):
        step: dict[str, Any] = {"where": {"event_type": f"t{index}"}}
        if fields is not None:
            step["group_by"] = fields
        steps.append(step)
    rule = base(kind="sequence", window="15m", steps=steps, group_by=list(group_by))
    del rule["where"]
    return rule


def test_sequence_steps_may_group_by_fields_of_their_own() -> None:
    rule = SequenceRule.model_validate(sequence_rule(["server_hostname", "details.new_user"], None))
    assert rule.steps[0].group_by == ("server_hostname", "details.new_user")
    assert rule.steps[1].group_by is None
    assert rule.step_group_by == (("server_hostname", "details.new_user"), ("server_hostname", "user_id"))
    # A step without its own group_by stays without one: it follows the rule's.
    assert [step.get("group_by") for step in rule.model_dump(mode="json", exclude_defaults=True)["steps"]] == [
        ["server_hostname", "details.new_user"],
        None,
    ]


@pytest.mark.parametrize(
    ("rule", "errors"),
    [
        (
            sequence_rule(["details.new_user"], None),
            {"steps.0.group_by": "has 1, expected 2 fields: one for each of the rule's group_by (server_hostname,"},
        ),
        (
            sequence_rule(None, ["user_id"], group_by=()),
            {"steps.1.group_by": "has 1, expected 0 fields: one for each of the rule's group_by, matched by position"},
        ),
        (
            sequence_rule(["details.new_user"], ["server_hostname", "user_id", "severity"], group_by=["user_id"]),
            {"steps.1.group_by": "has 3, expected 1 field: one for each of the rule's group_by (user_id), matched"},
        ),
        (
            sequence_rule(["server_hostname", "details."], None),
            {"steps.0.group_by.1": "invalid details path 'details.': empty key"},
        ),
        # A broken step is that step's error only, not also "too few steps".
        (sequence_rule(["nope", "user_id"], None), {"steps.0.group_by.0": "unknown field 'nope'"}),
        (sequence_rule(None), {"steps": "expected 2 to 16 steps, got 1"}),
        (sequence_rule(*[None] * 17), {"steps": "expected 2 to 16 steps, got 17"}),
    ],
)
def test_step_group_by_errors_name_the_step_and_field(rule: dict[str, Any], errors: dict[str, str]) -> None:
    with pytest.raises(ValidationError) as info:
        SequenceRule.model_validate(rule)
    found = error_fields(info.value)
    assert set(found) == set(errors)
    for field, message in errors.items():
        assert message in found[field]


def test_rules_check_names_the_file_rule_step_and_field(tmp_path: Path) -> None:
    rule = sequence_rule(["details.new_user"], None) | {"id": "new-account-then-sudo"}
    path = tmp_path / "privilege.yaml"
    path.write_text(yaml.safe_dump({"rules": [rule]}))
    assert check_files([path]) == [
        f"{path}: rule 'new-account-then-sudo': steps.0.group_by: has 1, expected 2 fields: one for each of "
        "the rule's group_by (server_hostname, user_id), matched by position"
    ]
