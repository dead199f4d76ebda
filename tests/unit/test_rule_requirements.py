"""What the rule gate reads off a condition: each requirement must be necessary (an event that
fails it cannot match), which the gate tests check on events; here, that the right ones are read."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditflow.rules.requirements import Equals, Excludes, Substrings, either, requirements

PATH = "details.x"


def found(spec: Any) -> list[Any]:
    return list(requirements({PATH: spec}))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("a", [Equals(PATH, False, frozenset({"a"}))]),
        (5, [Equals(PATH, False, frozenset({5}))]),
        (True, []),  # booleans compare by identity, and True == 1
        (None, []),
        ({"in": ["a", 2, 2.5]}, [Equals(PATH, False, frozenset({"a", 2, 2.5}))]),
        ({"in": ["a", None]}, []),
        ({"in": ["a", False]}, []),
        ({"regex": r"^(?is:EXECVE)\Z"}, [Equals(PATH, True, frozenset({"execve"}))]),
        ({"regex": [r"^(?i:a\.b)\Z", r"^C\Z"]}, [Equals(PATH, True, frozenset({"a.b", "c"}))]),
        ({"regex": r"^abc\Z"}, [Equals(PATH, False, frozenset({"abc"}))]),
        ({"regex": r"^abc$"}, [Substrings(PATH, frozenset({"abc"}), exact=False)]),  # `$` allows a final newline
        ({"regex": r"^(?is:getcap)(?: |\Z)"}, [Substrings(PATH, frozenset({"getcap"}), exact=False)]),
        ({"regex": r"^(?:[^ ]* )(?s:.*)(?is:--post-file=)"}, [Substrings(PATH, frozenset({"--post-file="}), False)]),
        ({"regex": r"(?is:wget .* - http.* \| perl)"}, [Substrings(PATH, frozenset({" - http"}), exact=False)]),
        ({"regex": r"ab+c"}, [Substrings(PATH, frozenset({"a"}), exact=False)]),  # `b+`: not literal
        ({"regex": r"fo{2}|bar"}, [Substrings(PATH, frozenset({"f", "bar"}), exact=False)]),
        ({"regex": r"(?m)^abc$"}, []),  # global flags, not followed
        ({"regex": r"\x41bc"}, []),  # escapes with arguments, not followed
        ({"regex": r"[abc]"}, []),
        ({"regex": r"a(?=b)c"}, [Substrings(PATH, frozenset({"a"}), exact=False)]),
        ({"regex": r"(?i)é"}, []),  # non-ASCII: case-insensitive matching differs from lowercasing
        ({"contains": ["Ab", "c"], "ignore_case": True}, [Substrings(PATH, frozenset({"ab", "c"}), exact=True)]),
        ({"endswith": "X"}, [Substrings(PATH, frozenset({"x"}), exact=False)]),
        ({"not": {"equals": "a"}}, [Excludes(PATH, frozenset({"a"}))]),
        ({"not": {"in": ["a", "b"]}}, [Excludes(PATH, frozenset({"a", "b"}))]),
        ({"not": {"equals": "a", "contains": "b"}}, []),  # not (a and b): neither is excluded
        ({"not": {"all": [{"equals": "a"}, {"equals": "b"}]}}, []),
        ({"glob": "a*"}, []),
        ({"gt": 3}, []),
        ({"any": [{"equals": "a"}, {"in": ["b", "c"]}]}, [Equals(PATH, False, frozenset({"a", "b", "c"}))]),
        ({"any": [{"equals": "a"}, {"gt": 3}]}, []),  # a number above 3 needs no string
    ],
)
def test_requirements_of_a_value_spec(spec: Any, expected: list[Any]) -> None:
    assert found(spec) == expected


def test_requirements_of_combinators() -> None:
    conjunction = {"all": [{"source_service": "x"}, {PATH: {"contains": "y"}}]}
    assert requirements(conjunction) == (
        Equals("source_service", False, frozenset({"x"})),
        Substrings(PATH, frozenset({"y"}), exact=False),
    )
    branches = {
        "any": [
            {"source_service": "a", PATH: {"contains": "p", "ignore_case": True}},
            {"source_service": "b", "user_id": "root"},
        ]
    }
    assert requirements(branches) == (Equals("source_service", False, frozenset({"a", "b"})),)
    assert requirements({"not": {"source_service": "a"}}) == (Excludes("source_service", frozenset({"a"})),)
    assert requirements({"not": {"source_service": "a", "user_id": "b"}}) == ()
    # the detector indexes the event types a rule names; an exclusion it does not
    assert requirements({"event_type": "user_login"}) == ()
    assert requirements({"event_type": {"not": {"equals": "k8s_audit"}}}) == (
        Excludes("event_type", frozenset({"k8s_audit"})),
    )


def test_field_operators_require_nothing_of_either_field() -> None:
    """A comparison with another field tells nothing about either value: no requirement from it,
    alone, negated or in a branch, while the operators beside it still count."""
    assert found({"equals_field": "user_id"}) == []
    assert found({"contains_field": "user_id", "ignore_case": True}) == []
    assert found({"not": {"equals_field": "user_id"}}) == []
    assert found({"any": [{"startswith_field": "user_id"}, {"equals": "a"}]}) == []
    assert found({"endswith_field": "user_id", "startswith": "a"}) == [Substrings(PATH, frozenset({"a"}), exact=False)]
    assert requirements({"not": {PATH: {"equals_field": "user_id"}}}) == ()
    assert requirements({"user_id": "root", PATH: {"equals_field": "user_id"}}) == (
        Equals("user_id", False, frozenset({"root"})),
    )


def test_either_keeps_what_every_alternative_requires() -> None:
    first = (Equals("a", False, frozenset({"x"})), Excludes("b", frozenset({"p", "q"})))
    second = (Equals("a", False, frozenset({"y"})), Excludes("b", frozenset({"q"})), Equals("c", False, frozenset({1})))
    assert either([first, second]) == (Equals("a", False, frozenset({"x", "y"})), Excludes("b", frozenset({"q"})))
    assert either([first, ()]) == ()


LITERALS = ["ab", "a.b", "x y", "-i", "(", "[q]", "\\", "é", "İ", "\u017f", "\u212a", "\n"]
PIECES = [*LITERALS, ".*", "(?s:.*)", "(?i:", "(?is:", ")", "(?: |\\Z)", "[^ ]*", "+", "?", "{2}", "|", "^", "\\Z"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=8), st.lists(st.sampled_from(LITERALS), max_size=6))
def test_a_regex_never_matches_a_value_its_requirements_refuse(pieces: list[str], words: list[str]) -> None:
    """Necessary, for any pattern the analysis reads: when it matches an ASCII value, that value
    meets each requirement read from it."""
    pattern = "".join(pieces)
    try:
        compiled = re.compile(pattern)
    except re.error:
        return
    for candidate in ("".join(words), "".join(words).upper(), " ".join(words), pattern):
        if not candidate.isascii() or compiled.search(candidate) is None:
            continue
        for requirement in found({"regex": pattern}):
            if isinstance(requirement, Equals):
                value = candidate.lower() if requirement.folded else candidate
                assert value in requirement.values, (pattern, candidate)
            elif isinstance(requirement, Substrings):
                assert any(n in candidate.lower() for n in requirement.needles), (pattern, candidate)
