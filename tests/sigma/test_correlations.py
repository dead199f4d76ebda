"""Sigma correlation rules: event_count, value_count, temporal_ordered and temporal converted (with
group-by aliases) and run over each window-state backend; what AuditFlow cannot express is reported
with its reason."""

from __future__ import annotations

from pathlib import Path

from auditflow.backends.state import WindowState
from tests.sigma.helpers import BASE, correlation, create_binding, fire, import_texts, read_secret


def converted(tmp_path: Path, body: str) -> dict[str, object]:
    report = import_texts(tmp_path, BASE, correlation(body))
    statuses = {o.title: (o.status, o.reason) for o in report.outcomes}
    assert statuses["Secret read"] == ("referenced", "used by a correlation only")
    if "binding_created" not in body:
        assert statuses["Role binding created"][0] == "converted"  # not referenced: a rule of its own
    else:
        assert statuses["Role binding created"] == ("referenced", "used by a correlation only")
    [rule] = [r.rule for r in report.rules if r.title.startswith("Correlation")]
    return rule


async def test_event_count_is_a_threshold_per_group(tmp_path: Path, any_state: WindowState) -> None:
    body = """  type: event_count
  rules: [secret_read]
  group-by: [user.username]
  timespan: 5m
  condition: {gte: 3}
"""
    rule = converted(tmp_path, body)
    assert (rule["kind"], rule["count"], rule["window"]) == ("threshold", 3, "300s")
    assert rule["group_by"] == ["details.kubernetes.audit.user.username"]
    quiet = [read_secret(0), read_secret(10), read_secret(20, user="bob"), read_secret(400)]
    assert await fire(any_state, rule, quiet) == []
    [alert] = await fire(any_state, rule, [read_secret(401), read_secret(402)])
    assert alert.occurrences == 3
    assert alert.group == {"details.kubernetes.audit.user.username": "alice"}
    assert "attack.t1552.007" in alert.tags


async def test_value_count_is_a_distinct_threshold(tmp_path: Path, any_state: WindowState) -> None:
    body = """  type: value_count
  rules: [secret_read]
  group-by: [user.username]
  timespan: 10m
  condition: {gt: 2, field: objectRef.name}
"""
    rule = converted(tmp_path, body)
    assert (rule["count"], rule["distinct"]) == (3, "details.kubernetes.audit.objectRef.name")
    same = [read_secret(i, name="db") for i in range(5)]
    assert await fire(any_state, rule, same) == []
    [alert] = await fire(any_state, rule, [read_secret(10, name="api"), read_secret(11, name="tls")])
    assert alert.occurrences == 3


async def test_temporal_ordered_is_a_sequence(tmp_path: Path, any_state: WindowState) -> None:
    body = """  type: temporal_ordered
  rules: [binding_created, secret_read]
  group-by: [user.username]
  timespan: 10m
"""
    report = import_texts(tmp_path, BASE, correlation(body))
    [converted_rule] = report.rules
    rule = converted_rule.rule
    assert rule["kind"] == "sequence"
    wrong_order = [read_secret(0, user="bob"), create_binding(1, user="bob")]
    assert await fire(any_state, rule, wrong_order) == []
    other_user = [create_binding(0, user="carol"), read_secret(5, user="dave")]
    assert await fire(any_state, rule, other_user) == []
    [alert] = await fire(any_state, rule, [create_binding(0), read_secret(30)])
    assert alert.group == {"details.kubernetes.audit.user.username": "alice"}


async def test_temporal_is_an_unordered_sequence(tmp_path: Path, any_state: WindowState) -> None:
    body = """  type: temporal
  rules: [secret_read, binding_created]
  group-by: [user.username]
  timespan: 10m
"""
    rule = converted(tmp_path, body)
    assert (rule["kind"], rule["ordered"], rule["window"]) == ("sequence", False, "600s")
    assert rule["group_by"] == ["details.kubernetes.audit.user.username"]
    assert all("group_by" not in step for step in rule["steps"])  # type: ignore[attr-defined]
    apart = [create_binding(0, user="bob"), read_secret(601, user="bob")]
    other_user = [create_binding(0, user="carol"), read_secret(5, user="dave")]
    one_rule_twice = [read_secret(0, user="erin"), read_secret(1, user="erin", name="api")]
    assert await fire(any_state, rule, [*apart, *other_user, *one_rule_twice]) == []
    # In either order, and the binding (dated earlier) arriving after the read.
    [alert] = await fire(any_state, rule, [read_secret(30), create_binding(10)])
    assert alert.group == {"details.kubernetes.audit.user.username": "alice"}
    assert (alert.occurrences, alert.rule_kind) == (2, "sequence")
    assert [e.details["kubernetes"]["audit"]["verb"] for e in alert.sample_events] == ["create", "get"]


ALIASED = """  type: {kind}
  rules: [binding_created, secret_read]
  group-by: [subject, objectRef.namespace]
  aliases:
    subject:
      binding_created: user.username
      secret_read: impersonatedUser.username
  timespan: 10m
"""


async def test_aliases_become_the_steps_own_group_by(tmp_path: Path, any_state: WindowState) -> None:
    # Whoever created a role binding is then impersonated to read a secret: the account is
    # `user` in the one rule's events and `impersonatedUser` in the other's.
    for kind in ("temporal", "temporal_ordered"):
        rule = converted(tmp_path / kind, ALIASED.format(kind=kind))
        audit = "details.kubernetes.audit"
        assert rule["group_by"] == [f"{audit}.user.username", f"{audit}.objectRef.namespace"]
        steps = rule["steps"]
        assert isinstance(steps, list)
        assert "group_by" not in steps[0]
        assert steps[1]["group_by"] == [f"{audit}.impersonatedUser.username", f"{audit}.objectRef.namespace"]
    rule = converted(tmp_path / "run", ALIASED.format(kind="temporal"))
    own_read = [create_binding(0, user="mallory"), read_secret(5, user="mallory")]  # not impersonated
    assert await fire(any_state, rule, own_read) == []
    [alert] = await fire(any_state, rule, [read_secret(30, user="ops", impersonating="mallory")])
    assert alert.group == {
        "details.kubernetes.audit.user.username": "mallory",
        "details.kubernetes.audit.objectRef.namespace": None,
    }
    assert alert.occurrences == 2


def test_aliases_of_one_field_group_a_threshold_and_of_two_are_reported(tmp_path: Path) -> None:
    same = """  type: event_count
  rules: [binding_created, secret_read]
  group-by: [who]
  aliases:
    who: {binding_created: user.username, secret_read: user.username}
  timespan: 10m
  condition: {gte: 5}
"""
    rule = converted(tmp_path / "same", same)
    assert (rule["kind"], rule["group_by"]) == ("threshold", ["details.kubernetes.audit.user.username"])
    different = ALIASED.format(kind="event_count") + "  condition: {gte: 5}\n"
    report = import_texts(tmp_path / "different", BASE, correlation(different))
    reasons = {o.title: (o.status, o.reason) for o in report.outcomes}
    assert reasons["Correlation 201"] == (
        "unsupported",
        "alias 'subject' maps to different event fields in the referenced rules, "
        "which event_count cannot group by: it counts their events together",
    )


def test_correlations_that_cannot_be_expressed_are_reported(tmp_path: Path) -> None:
    some = "  type: temporal\n  rules: [binding_created, secret_read]\n  timespan: 10m\n  condition: {gte: 1}\n"
    at_most = "  type: event_count\n  rules: [secret_read]\n  timespan: 10m\n  condition: {lte: 2}\n"
    missing = "  type: event_count\n  rules: [no_such_rule]\n  timespan: 10m\n  condition: {gte: 2}\n"
    either = "  type: temporal\n  timespan: 10m\n  condition: binding_created or secret_read\n"
    summed = (
        "  type: value_sum\n  rules: [secret_read]\n  timespan: 10m\n"
        "  condition: {gte: 2, field: responseStatus.code}\n"
    )
    alone = "  type: temporal_ordered\n  rules: [secret_read]\n  timespan: 10m\n"
    unused_alias = (
        "  type: temporal\n  rules: [binding_created, secret_read]\n  timespan: 10m\n"
        "  group-by: [user.username]\n  aliases:\n"
        "    who: {binding_created: user.username, secret_read: user.username}\n"
    )
    texts = [some, at_most, missing, either, summed, alone, unused_alias]
    report = import_texts(tmp_path, BASE, *(correlation(text, 301 + i) for i, text in enumerate(texts)))
    reasons = {o.title: (o.status, o.reason) for o in report.outcomes}
    assert reasons["Correlation 301"] == (
        "unsupported",
        "temporal is supported when all referenced rules must occur (gte: 2), not at least 1 of them",
    )
    assert reasons["Correlation 302"] == (
        "unsupported",
        "correlation condition lte: only gte and gt are supported",
    )
    assert reasons["Correlation 303"][0] == "broken"
    assert "no_such_rule" in reasons["Correlation 303"][1]
    assert reasons["Correlation 304"] == (
        "unsupported",
        "temporal condition 'binding_created or secret_read': only all referenced rules joined by 'and' is supported",
    )
    assert reasons["Correlation 305"] == ("unsupported", "correlation type value_sum is not supported")
    assert reasons["Correlation 306"] == ("unsupported", "temporal_ordered needs at least two rules")
    assert reasons["Correlation 307"] == ("unsupported", "alias 'who' is not in the correlation's group-by")


async def test_an_extended_condition_joining_every_rule_is_all_of_them(tmp_path: Path, any_state: WindowState) -> None:
    body = (
        "  type: temporal\n  group-by: [user.username]\n  timespan: 10m\n  condition: secret_read and binding_created\n"
    )
    rule = converted(tmp_path, body)
    assert (rule["kind"], rule["ordered"], len(rule["steps"])) == ("sequence", False, 2)  # type: ignore[arg-type]
    [alert] = await fire(any_state, rule, [create_binding(0), read_secret(1)])
    assert alert.occurrences == 2
