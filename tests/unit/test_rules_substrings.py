"""The substring operators (`contains`, `startswith`, `endswith`, `ignore_case`) and the rule gate
that evaluates a rule only when one of its substrings occurs in the event."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditflow.model import Event
from auditflow.rules.conditions import ConditionError, compile_where
from auditflow.rules.prefilter import RuleGate
from auditflow.rules.requirements import Equals, Substrings, requirements


def event(line: Any = "", **details: Any) -> Event:
    return Event(event_type="user_login", details={"event": {"original": line}, **details})


def holds(where: dict[str, Any], e: Event) -> bool:
    return compile_where(where)(e)


@pytest.mark.parametrize(
    ("spec", "line", "expected"),
    [
        ({"contains": "wget"}, "sh -c wget http://x", True),
        ({"contains": "wget"}, "sh -c WGET http://x", False),
        ({"contains": "WGet", "ignore_case": True}, "sh -c wGET http://x", True),
        ({"contains": ["nc -l", "socat"], "ignore_case": True}, "SOCAT tcp-connect", True),
        ({"contains": ["nc -l", "socat"], "ignore_case": True}, "ncat -l", False),
        ({"startswith": "/usr/bin/", "ignore_case": True}, "/USR/bin/curl", True),
        ({"startswith": "/usr/bin/"}, "/bin/usr/bin/", False),
        ({"endswith": ["/rm", "/mv"]}, "/bin/mv", True),
        ({"endswith": "/RM", "ignore_case": True}, "/bin/rm", True),
        ({"endswith": "/rm"}, "/bin/rm -f", False),
        ({"not": {"contains": "x", "ignore_case": True}}, "aXb", False),
        ({"contains": "a", "regex": "^b"}, "ba", True),
        ({"contains": "a", "regex": "^b"}, "ab", False),
    ],
)
def test_substring_operators(spec: dict[str, Any], line: str, expected: bool) -> None:
    assert holds({"details.event.original": spec}, event(line)) is expected


def test_lists_match_by_element_and_non_strings_never() -> None:
    where = {"details.groups": {"contains": "WHEEL", "ignore_case": True}}
    assert holds(where, event(groups=["users", "wheel-admins"]))
    assert not holds(where, event(groups=["users"]))
    assert not holds({"details.event.original": {"contains": "1"}}, event(123))
    assert not holds({"details.event.original": {"contains": "1", "ignore_case": True}}, event(None))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"ignore_case": True, "regex": "x"},
            "x.ignore_case: applies to contains, startswith, endswith, contains_field, startswith_field, "
            "endswith_field: add one of them",
        ),
        ({"contains": "a", "ignore_case": "yes"}, "x.ignore_case: expected true or false, got 'yes'"),
        ({"contains": ""}, "x.contains: expected a non-empty string or a list of them"),
        ({"startswith": [1]}, "x.startswith: expected a non-empty string or a list of them"),
    ],
)
def test_bad_substring_specs_name_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ConditionError) as info:
        compile_where({"details.x": spec})
    assert str(info.value) == message.replace("x.", "details.x.", 1)


def test_needles_are_what_a_condition_cannot_hold_without() -> None:
    line = "details.event.original"

    def needles(where: dict[str, Any]) -> list[Substrings]:
        return [r for r in requirements(where) if isinstance(r, Substrings)]

    keyword = {"event_type": {"not": {"equals": "k8s_audit"}}, line: {"contains": ["A b", "c"], "ignore_case": True}}
    assert needles(keyword) == [Substrings(line, frozenset({"a b", "c"}), exact=True)]
    either = {"any": [{line: {"contains": "x", "ignore_case": True}}, {line: {"endswith": "Y", "ignore_case": True}}]}
    assert needles(either) == [Substrings(line, frozenset({"x", "y"}), exact=True)]
    both = {"all": [{"user_id": "a"}, {line: {"any": [{"contains": "p", "ignore_case": True}, {"regex": "[q]"}]}}]}
    assert needles(both) == []  # the regex branch needs no literal text
    # case-sensitive: needed in the lowercased value too, decided for ASCII values only
    assert needles({line: {"contains": "X"}}) == [Substrings(line, frozenset({"x"}), exact=False)]
    assert needles({"not": {line: {"contains": "x", "ignore_case": True}}}) == []
    mixed = {
        "any": [{line: {"contains": "x", "ignore_case": True}}, {"user_id": {"contains": "y", "ignore_case": True}}]
    }
    assert needles(mixed) == []


NEEDLES = ["wget ", " | sh", "chmod +x /tmp/", "nc -l -p ", "scp", "/dev/tcp/", "é-x-É", "a"]


def gate_and_conditions() -> tuple[RuleGate[Any], list[Any]]:
    conditions = [compile_where({"details.event.original": {"contains": n, "ignore_case": True}}) for n in NEEDLES]
    conditions.append(compile_where({"details.count": {"gt": 1}}))  # requires nothing the gate reads
    return RuleGate(conditions, lambda c: requirements(c.raw)), conditions


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from([*NEEDLES, *(n.upper() for n in NEEDLES), " ", "x", "/", "tmp", "-", "\n", "İ"]), max_size=12
    )
)
def test_the_gate_never_skips_a_rule_that_holds(parts: list[str]) -> None:
    gate, conditions = gate_and_conditions()
    e = event("".join(parts))
    selected = gate.select(e)
    assert [c for c in conditions if c(e)] == [c for c in selected if c(e)]
    assert list(selected) == [c for c in conditions if c in selected]  # in rule order


def test_the_gate_skips_rules_whose_substrings_are_absent() -> None:
    gate, conditions = gate_and_conditions()
    assert list(gate.select(event("Offered publickey for bob"))) == [conditions[-1]]
    assert list(gate.select(event("WGET http://x | SH"))) == [conditions[0], conditions[1], conditions[-1]]
    assert list(gate.select(event(["a list", "of lines"]))) == conditions  # not a string: every rule decides


def test_the_gate_narrows_by_the_source_fields_a_rule_pins() -> None:
    auditd = compile_where(
        {"source_service": "auditd", "details.event.original": {"contains": "x", "ignore_case": True}}
    )
    sshd = compile_where({"details.event.dataset": {"in": ["sshd", "sudo"]}, "user_id": "root"})
    anywhere = compile_where({"user_id": "root"})
    assert Equals("source_service", False, frozenset({"auditd"})) in requirements(auditd.raw)
    gate = RuleGate([auditd, sshd, anywhere], lambda c: requirements(c.raw))

    def source(service: str | None, dataset: Any, line: str = "X") -> Event:
        return Event(
            event_type="user_login",
            source_service=service,
            user_id="root",
            details={"event": {"original": line, "dataset": dataset}},
        )

    assert list(gate.select(source("auditd", "auditd"))) == [auditd, anywhere]
    assert list(gate.select(source("auditd", "auditd", line="y"))) == [anywhere]  # no needle
    assert list(gate.select(source("sshd", "sshd"))) == [sshd, anywhere]
    assert list(gate.select(source(None, None))) == [anywhere]
    assert list(gate.select(source("sshd", ["sshd"]))) == [sshd, anywhere]  # a list: by its elements
    assert list(gate.select(source("auditd", ["sshd", "auditd"]))) == [auditd, sshd, anywhere]
