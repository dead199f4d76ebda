"""Sigma correlation rules: event_count, value_count and temporal_ordered, converted and run over
each window-state backend; the correlation types AuditFlow cannot express are reported."""

from __future__ import annotations

from pathlib import Path

from auditflow.backends.state import WindowState
from auditflow.model import Event
from tests.sigma.helpers import fire, import_texts, k8s_event

BASE = """title: Secret read
id: 6f1e2d3c-0000-4000-8000-000000000101
name: secret_read
status: test
level: low
logsource: {product: kubernetes, service: audit}
detection:
  selection:
    verb: get
    objectRef.resource: secrets
  condition: selection
---
title: Role binding created
id: 6f1e2d3c-0000-4000-8000-000000000102
name: binding_created
status: test
level: low
logsource: {product: kubernetes, service: audit}
detection:
  selection:
    verb: create
    objectRef.resource: rolebindings
  condition: selection
"""


def correlation(body: str, serial: int = 201) -> str:
    return f"""title: Correlation {serial}
id: 6f1e2d3c-0000-4000-8000-{serial:012d}
status: test
level: high
tags: [attack.credential-access, attack.t1552.007]
correlation:
{body}"""


def read_secret(seconds: float, user: str = "alice", name: str = "db") -> Event:
    return k8s_event(seconds, verb="get", objectRef={"resource": "secrets", "name": name}, user={"username": user})


def create_binding(seconds: float, user: str = "alice") -> Event:
    return k8s_event(seconds, verb="create", objectRef={"resource": "rolebindings"}, user={"username": user})


def converted(tmp_path: Path, body: str) -> dict[str, object]:
    report = import_texts(tmp_path, BASE, correlation(body))
    statuses = {o.title: (o.status, o.reason) for o in report.outcomes}
    assert statuses["Secret read"] == ("referenced", "used by a correlation only")
    assert statuses["Role binding created"][0] == "converted"  # not referenced: a rule of its own
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


def test_correlations_that_cannot_be_expressed_are_reported(tmp_path: Path) -> None:
    unordered = "  type: temporal\n  rules: [binding_created, secret_read]\n  timespan: 10m\n"
    at_most = "  type: event_count\n  rules: [secret_read]\n  timespan: 10m\n  condition: {lte: 2}\n"
    missing = "  type: event_count\n  rules: [no_such_rule]\n  timespan: 10m\n  condition: {gte: 2}\n"
    report = import_texts(
        tmp_path, BASE, correlation(unordered, 301), correlation(at_most, 302), correlation(missing, 303)
    )
    reasons = {o.title: (o.status, o.reason) for o in report.outcomes}
    assert reasons["Correlation 301"] == ("unsupported", "correlation type temporal is not supported")
    assert reasons["Correlation 302"] == (
        "unsupported",
        "correlation condition lte: only gte and gt are supported",
    )
    assert reasons["Correlation 303"][0] == "broken"
    assert "no_such_rule" in reasons["Correlation 303"][1]
