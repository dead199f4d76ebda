"""The rule gate changes what is evaluated, never what fires: the detector with the gate raises
exactly the alerts of the detector that evaluates every rule of an event's type, over parsed
events of every format and over generated ones built to probe each path of the gate (case,
non-ASCII look-alikes, lists, numbers, missing values, enums), with the shipped pack, the rules of
tests/fixtures/gate-rules (which take every path of the gate) and Sigma rules converted from there."""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from auditflow.backends.state import create_state
from auditflow.bench.rulecost import parsed_events
from auditflow.model import Event
from auditflow.model.event import Severity
from auditflow.rules import Detector, Rule, RuleSet, load_rules, prefilter
from auditflow.rules.conditions import compile_where
from auditflow.rules.prefilter import RuleGate
from auditflow.rules.requirements import requirements

GATE_RULES = Path(__file__).parents[1] / "fixtures" / "gate-rules"


@functools.cache
def _ruleset() -> RuleSet:
    pack, gate = load_rules(None), load_rules(GATE_RULES)
    assert any(rule.id.startswith("sigma-") for rule in gate.rules)  # the .sigma.yml file was converted
    return RuleSet.build([*pack.rules, *gate.rules], version="gate", source="gate")


@pytest.fixture
def ruleset() -> RuleSet:
    return _ruleset()


async def _alerts(ruleset: RuleSet, events: Sequence[Event], *, prefilter: bool) -> list[tuple[str, str, int]]:
    async with create_state("memory://") as state:
        detector = Detector(state, lambda: ruleset, prefilter=prefilter)
        raised = []
        for i in range(0, len(events), 200):
            raised += [(a.rule_id, str(a.alert_id), a.occurrences) for a in await detector.process(events[i : i + 200])]
    return sorted(raised)


def test_parsed_events_raise_the_same_alerts_with_and_without_the_gate(ruleset: RuleSet) -> None:
    events = parsed_events(150, seed=11)
    gated = asyncio.run(_alerts(ruleset, events, prefilter=True))
    assert gated == asyncio.run(_alerts(ruleset, events, prefilter=False))
    fired = {rule_id for rule_id, _, _ in gated}
    # not a vacuous comparison: the rules of every kind of gate path fire on these events
    assert {"gate-auditd-failure-folded", "gate-k8s-secret-deleted", "gate-not-kubernetes-keywords"} <= fired
    assert {"gate-auditd-failure-then-login", "gate-either-dataset", "gate-failed-password-regex"} <= fired
    assert any(rule_id.startswith("sigma-") for rule_id in fired)


def test_the_gate_skips_most_rules(ruleset: RuleSet) -> None:
    """What the gate is for: over the parsed events, far fewer rules are evaluated than every rule
    of each event's type."""
    conditions = {t: [r.where for r in ruleset.for_event_type(t) if hasattr(r, "where")] for t in _types(ruleset)}
    gates = {t: RuleGate(c, lambda c: requirements(c.raw), fixed={"event_type": t}) for t, c in conditions.items()}
    events = [e for e in parsed_events(100, seed=3) if e.event_type in gates]
    every = sum(len(conditions[e.event_type]) for e in events)
    selected = sum(len(gates[e.event_type].select(e)) for e in events)
    assert selected * 3 < every


def _types(ruleset: RuleSet) -> set[str]:
    return {t for rule in ruleset.enabled for t in (rule.event_types or ())}


STRINGS = [
    "USER_AUTH", "user_auth", "User_Auth", "USER_AUTH\n", "u\u017fer_auth", "USER_LOGIN", "EXECVE",
    "delete", "DELETE", "dElEtE", "secrets", "SECRETS", "\u017fecrets", "configmaps", "list",
    "sshd", "auditd", "sudo", "accounts", "systemd", "kube-apiserver", "root", "session", "auth",
    "Failed password for root from 203.0.113.5", "failed password for invalid user x from",
    "Accepted publickey for git", "accepted publickey", "pam_unix(su:auth): session opened for user root",
    "new user: name=bob, UID=1004", "/usr/bin/systemctl restart nginx", "/USR/BIN/id", "/bin/\u017fystemctl",
    "res=success", "RES=SUCCESS", "res=\u017fuccess", "\u212a", "İnvalid user", "invalid user", "", "403", "401",
]  # fmt: skip
VALUES: list[Any] = [*STRINGS, 403, 403.0, 401, True, False, None, ["USER_AUTH"], ["x", "user_auth"], [["USER_AUTH"]]]
VALUES += [{"a": 1}, [403], ["DELETE", None], Severity.INFO]
PATHS = [
    ("source_service",), ("user_id",), ("details", "audit", "records"), ("details", "audit", "type"),
    ("details", "kubernetes", "audit", "verb"), ("details", "kubernetes", "audit", "objectRef", "resource"),
    ("details", "kubernetes", "audit", "responseStatus", "code"), ("details", "event", "original"),
    ("details", "event", "dataset"), ("details", "process", "command_line"), ("details", "message"),
    ("details", "pam", "type"), ("action_result",), ("severity",), ("server_hostname",),
]  # fmt: skip
# One parsed event of each type and source: what generated events start from, so they come close
# to what the rules look for.
BASES = {(e.event_type, e.source_service): e for e in parsed_events(300, seed=5)}
EVENT_TYPES = sorted(BASES, key=str)


def _event(base: tuple[str, str | None], assignments: list[tuple[tuple[str, ...], Any]]) -> Event:
    original = BASES[base].model_dump(exclude={"event_id", "timestamp", "severity"})
    details: dict[str, Any] = original.pop("details")
    top: dict[str, Any] = original
    for path, value in assignments:
        if path[0] != "details":
            if path[0] == "severity":
                top["severity"] = Severity.WARNING if value is None else Severity.INFO
            elif value is None or isinstance(value, str):
                top[path[0]] = value
            continue
        node = details
        for key in path[1:-1]:
            node = node.setdefault(key, {}) if isinstance(node.get(key, {}), dict) else {}
        node[path[-1]] = value
    event = Event.model_validate({**top, "details": details})
    event.details.update(details)  # objects (an enum) as a producer in this process may put them
    return event


Assignments = list[tuple[tuple[str, ...], Any]]
EDGES: list[tuple[tuple[str, str | None], Assignments]] = [
    (("user_login", "auditd"), [(("details", "event", "original"), "res=\u017fuccess")]),
    (("user_auth", "auditd"), [(("details", "audit", "records"), ["u\u017fer_auth"]), (("action_result",), "FAILURE")]),
    (
        ("k8s_audit", "kube-apiserver"),
        [
            (("details", "kubernetes", "audit", "objectRef", "resource"), "\u017fecrets"),
            (("details", "kubernetes", "audit", "verb"), "delete"),
        ],
    ),
    (("k8s_audit", "kube-apiserver"), [(("details", "kubernetes", "audit", "responseStatus", "code"), 403.0)]),
    (("service_state_change", "systemd"), []),  # severity: an enum
    (("sudo_command", "sudo"), [(("severity",), None)]),  # WARNING
]
EDGE_TYPES = [base for base, _ in EDGES]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(EVENT_TYPES),
            st.lists(st.tuples(st.sampled_from(PATHS), st.sampled_from(VALUES)), min_size=1, max_size=8),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_generated_events_raise_the_same_alerts_with_and_without_the_gate(
    specs: list[tuple[tuple[str, str | None], list[tuple[tuple[str, ...], Any]]]],
) -> None:
    events = [_event(base, assignments) for base, assignments in [*EDGES, *specs]]
    ruleset = _ruleset()
    assert asyncio.run(_alerts(ruleset, events, prefilter=True)) == asyncio.run(
        _alerts(ruleset, events, prefilter=False)
    )


@pytest.mark.parametrize("use_re2", [True, False])
@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(EVENT_TYPES),
    st.lists(st.tuples(st.sampled_from(PATHS), st.sampled_from(VALUES)), min_size=1, max_size=8),
)
def test_the_gate_never_skips_a_condition_that_holds(
    use_re2: bool, base: tuple[str, str | None], assignments: list[tuple[tuple[str, ...], Any]]
) -> None:
    """At the gate itself, with RE2 and without: every condition of the test rules that holds for
    the event is among those selected, in order."""
    _check_gate(use_re2, _event(base, assignments))


@pytest.mark.parametrize("use_re2", [True, False])
@pytest.mark.parametrize(("base", "assignments"), EDGES)
def test_values_the_gate_cannot_decide_let_the_rules_decide(
    use_re2: bool, base: tuple[str, str | None], assignments: list[tuple[tuple[str, ...], Any]]
) -> None:
    """Non-ASCII letters that case-insensitive expressions match to ASCII ones, numbers of another
    type, enums: each edge makes a test rule hold that a careless gate would skip."""
    event = _event(base, assignments)
    _, conditions = _gate(use_re2)
    assert any(c(event) for c in conditions)
    _check_gate(use_re2, event)


def _check_gate(use_re2: bool, event: Event) -> None:
    gate, conditions = _gate(use_re2)
    selected = gate.select(event)
    assert [c for c in conditions if c(event)] == [c for c in selected if c(event)]
    assert list(selected) == [c for c in conditions if c in selected]


_GATES: dict[bool, tuple[RuleGate[Any], list[Any]]] = {}


def _gate(use_re2: bool) -> tuple[RuleGate[Any], list[Any]]:
    """The test rules' conditions behind a gate that scans with RE2 whatever the number of
    substrings (the test rules have few), or never."""
    if use_re2 not in _GATES:
        rules = load_rules(GATE_RULES).rules
        conditions = [compile_where(r.where.raw) for r in rules if hasattr(r, "where")]
        gate = RuleGate(conditions, lambda c: requirements(c.raw), re2_from=1 if use_re2 else None)
        _GATES[use_re2] = gate, conditions
    return _GATES[use_re2]


def test_a_gate_past_its_memory_bounds_selects_the_same_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nodes and children beyond the bounds are built per event instead of remembered: slower,
    never different."""
    _, conditions = _gate(use_re2=False)
    events = parsed_events(60, seed=2)
    unbounded = RuleGate(conditions, lambda c: requirements(c.raw))
    expected = [list(unbounded.select(e)) for e in events]
    monkeypatch.setattr(prefilter, "MAX_NODES", 1)
    monkeypatch.setattr(prefilter, "MAX_CHILDREN", 1)
    bounded = RuleGate(conditions, lambda c: requirements(c.raw))
    assert [list(bounded.select(e)) for e in events] == expected
    assert len(bounded._root._tree.nodes) == 1


AUDIT = "details.kubernetes.audit"
FIELDREF_RULES: list[dict[str, Any]] = [
    {  # only a field operator beside the event type: the gate has nothing to require
        "id": "fieldref-self-impersonation",
        "where": {
            "event_type": "k8s_audit",
            f"{AUDIT}.user.username": {"equals_field": f"{AUDIT}.impersonatedUser.username"},
        },
    },
    {  # requirements of the other operators, none of the field operator beside them
        "id": "fieldref-own-debug-pod",
        "where": {
            "event_type": "k8s_audit",
            f"{AUDIT}.verb": {"in": ["get", "delete"]},
            f"{AUDIT}.objectRef.name": {"startswith_field": "user_id", "contains": "-"},
        },
    },
    {  # a negated field operator
        "id": "fieldref-deletes-another-users-object",
        "where": {
            "event_type": "k8s_audit",
            f"{AUDIT}.verb": "delete",
            "not": {f"{AUDIT}.objectRef.name": {"equals_field": "user_id"}},
        },
    },
    {  # in one branch of an `any`
        "id": "fieldref-in-any",
        "where": {
            "event_type": "k8s_audit",
            "any": [{f"{AUDIT}.objectRef.name": {"endswith_field": "user_id"}}, {f"{AUDIT}.verb": "list"}],
        },
    },
]


def test_rules_with_field_operators_raise_the_same_alerts_with_and_without_the_gate() -> None:
    adapter = TypeAdapter[Rule](Rule)
    rules = [
        adapter.validate_python({"name": r["id"], "kind": "match", "severity": "INFO", **r}) for r in FIELDREF_RULES
    ]
    ruleset = RuleSet.build(rules, version="fieldref", source="test")
    values = itertools.product(
        ["bob", "Bob", None],  # user_id
        ["bob", None],  # user.username
        ["bob", "alice", None],  # impersonatedUser.username
        ["bob-debug", "bob", "debug-bob", "Bob-x", None],  # objectRef.name
        ["get", "delete", "list"],  # verb
    )
    events = []
    for user_id, username, impersonated, name, verb in values:
        audit: dict[str, Any] = {"verb": verb, "user": {"username": username}, "objectRef": {"name": name}}
        if impersonated is not None:
            audit["impersonatedUser"] = {"username": impersonated}
        events.append(Event(event_type="k8s_audit", user_id=user_id, details={"kubernetes": {"audit": audit}}))
    gated = asyncio.run(_alerts(ruleset, events, prefilter=True))
    assert gated == asyncio.run(_alerts(ruleset, events, prefilter=False))
    fired = [rule_id for rule_id, _, _ in gated]
    for rule in FIELDREF_RULES:  # each rule fires on some of the events, not on all
        assert 0 < fired.count(rule["id"]) < len(events), rule["id"]
