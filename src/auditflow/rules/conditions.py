"""Compile a rule's `where:` mapping into a plain Python predicate over events, once, at load time.

A condition map is `field -> spec`; every entry must hold. A spec is a scalar (equals) or a mapping
of operators, all of which must hold. `any`, `all` and `not` combine whole condition maps. When an
event's value is a list, a value operator holds if it holds for at least one element.

The field operators (`equals_field`, `contains_field`, ...) compare the value with another field of
the same event rather than a constant; a spec that uses one compiles to a test of (value, event).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from auditflow.model.event import Event
from auditflow.rules.fieldrefs import (
    FIELD_OPERATORS,
    SUBSTRING_FIELD_OPERATORS,
    PairTest,
    all_pair,
    any_pair,
    field_reference,
)
from auditflow.rules.fields import check_field_path, make_getter

Predicate = Callable[[Event], bool]
ValueTest = Callable[[Any], bool]

MAX_REGEX_LENGTH = 512
MAX_REGEX_INPUT = 8192  # bounds the cost of any regex on a long value (details may hold 64 KiB)
COMBINATORS = ("any", "all", "not")
VALUE_OPERATORS = (
    "equals",
    "in",
    "contains",
    "startswith",
    "endswith",
    "glob",
    "regex",
    "exists",
    "equals_field",
    "contains_field",
    "startswith_field",
    "endswith_field",
    "gt",
    "gte",
    "lt",
    "lte",
    "not",
    "any",
    "all",
)
SUBSTRING_OPERATORS = ("contains", "startswith", "endswith")
IGNORE_CASE = "ignore_case"  # a flag beside the substring operators, not an operator of its own
_CASE_OPERATORS = (*SUBSTRING_OPERATORS, *SUBSTRING_FIELD_OPERATORS)  # those ignore_case applies to

_SCALARS = (str, int, float, bool)
_NUMBERS = (int, float)
# A group that contains an unbounded quantifier, itself repeated without bound: `(a+)+`, `(\w*x)*`,
# `(.+){2,}`. Such patterns backtrack exponentially on a near-miss, so they are refused.
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*(?:[+*]|\{\d*,\})(?:[^()\\]|\\.)*\)(?:[+*]|\{\d*,\d*\})")


class ConditionError(ValueError):
    """A condition is malformed; the message starts with its path inside `where`."""


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled `where:` mapping. `event_types` is the set the map pins `event_type` to, if it does;
    what else it requires of an event, for the detector's rule gate, is read from `raw`
    (`auditflow.rules.requirements`)."""

    raw: Mapping[str, Any]
    test: Predicate
    event_types: frozenset[str] | None

    def __call__(self, event: Event) -> bool:
        return self.test(event)


def always(_event: Event) -> bool:
    return True


def specialise(condition: Condition, event_type: str) -> Predicate | None:
    """The condition's test for events of `event_type` only: without its top-level `event_type`
    entry, which every such event satisfies or none does. None when none does. The detector
    evaluates the rules by event type, so the entry would be tested again for every event."""
    raw = condition.raw
    if "event_type" not in raw or _refers_to_fields(raw["event_type"]):
        return condition.test
    if not _compile_spec(raw["event_type"], "event_type")(event_type):
        return None
    rest = {key: spec for key, spec in raw.items() if key != "event_type"}
    return _compile_map(rest, "") if rest else always


def compile_where(raw: Any) -> Condition:
    if isinstance(raw, Condition):
        return raw
    test = _compile_map(raw, "")
    return Condition(raw=raw, test=test, event_types=_pinned_event_types(raw))


class _LowerCache:
    """The last string lowercased, so the rules testing one field of one event lowercase it once."""

    __slots__ = ("_entry",)

    def __init__(self) -> None:
        self._entry: tuple[str, str] = ("", "")

    def __call__(self, value: str) -> str:
        entry = self._entry  # one read and one write of a tuple: safe if threads share it
        if entry[0] is value:
            return entry[1]
        lowered = value.lower()
        self._entry = (value, lowered)
        return lowered


lowered = _LowerCache()


def _fail(loc: str, message: str) -> ConditionError:
    return ConditionError(f"{loc}: {message}" if loc else message)


def _join(loc: str, key: object) -> str:
    if isinstance(key, int):
        return f"{loc}[{key}]"
    return f"{loc}.{key}" if loc else str(key)


def _compile_map(raw: Any, loc: str) -> Predicate:
    if not isinstance(raw, Mapping) or not raw:
        raise _fail(loc, "expected a non-empty mapping of field -> condition")
    tests: list[Predicate] = []
    for key, spec in raw.items():
        here = _join(loc, key)
        if not isinstance(key, str):
            raise _fail(here, "field names must be strings")
        if key in ("any", "all"):
            if not isinstance(spec, list) or not spec:
                raise _fail(here, "expected a non-empty list of condition mappings")
            parts = tuple(_compile_map(item, _join(here, i)) for i, item in enumerate(spec))
            tests.append(_any_of(parts) if key == "any" else _all_of(parts))
        elif key == "not":
            tests.append(_negate(_compile_map(spec, here)))
        else:
            try:
                check_field_path(key)
            except ValueError as exc:
                raise _fail(here, str(exc)) from None
            if _refers_to_fields(spec):
                tests.append(_pair_field_test(make_getter(key), _compile_pair_spec(spec, here)))
            elif isinstance(spec, str) and not key.startswith("details."):
                # The usual `action_result: FAILURE`: a top-level field holds a string or None,
                # never a list, so equality needs no element-wise wrapper.
                tests.append(_field_equals(make_getter(key), spec))
            else:
                tests.append(_field_test(make_getter(key), _compile_spec(spec, here)))
    return tests[0] if len(tests) == 1 else _all_of(tuple(tests))


def _negate(inner: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda x: not inner(x)


def _field_test(getter: Callable[[Event], Any], value_test: ValueTest) -> Predicate:
    return lambda event: value_test(getter(event))


def _field_equals(getter: Callable[[Event], Any], expected: str) -> Predicate:
    return lambda event: getter(event) == expected


def _pair_field_test(getter: Callable[[Event], Any], pair_test: PairTest) -> Predicate:
    return lambda event: pair_test(getter(event), event)


def _any_of(parts: tuple[Callable[[Any], bool], ...]) -> Callable[[Any], bool]:
    if len(parts) == 2:
        first, second = parts
        return lambda x: first(x) or second(x)

    def test(x: Any) -> bool:  # a loop: any() over a generator costs a frame per part
        for part in parts:  # noqa: SIM110 - the loop runs per event
            if part(x):
                return True
        return False

    return test


def _all_of(parts: tuple[Callable[[Any], bool], ...]) -> Callable[[Any], bool]:
    if len(parts) == 2:
        first, second = parts
        return lambda x: first(x) and second(x)
    if len(parts) == 3:
        first, second, third = parts
        return lambda x: first(x) and second(x) and third(x)

    def test(x: Any) -> bool:
        for part in parts:  # noqa: SIM110 - the loop runs per event
            if not part(x):
                return False
        return True

    return test


def _compile_spec(spec: Any, loc: str) -> ValueTest:
    """A value spec: a scalar (equals) or a mapping of operators that must all hold."""
    if isinstance(spec, list):
        raise _fail(loc, "a list is ambiguous here: write `in: [...]` (any of) or `all: [...]`")
    if not isinstance(spec, Mapping):
        return _elementwise(_equals(spec, loc))
    if not spec:
        raise _fail(loc, "expected at least one operator")
    ignore_case = _ignore_case(spec, loc)
    tests = [
        _substring(str(op), arg, ignore_case, _join(loc, op))
        if op in SUBSTRING_OPERATORS
        else _compile_operator(str(op), arg, _join(loc, op))
        for op, arg in spec.items()
        if op != IGNORE_CASE
    ]
    return tests[0] if len(tests) == 1 else _all_of(tuple(tests))


def _ignore_case(spec: Mapping[Any, Any], loc: str) -> bool:
    ignore_case = spec.get(IGNORE_CASE, False)
    if IGNORE_CASE in spec:
        if not isinstance(ignore_case, bool):
            raise _fail(_join(loc, IGNORE_CASE), f"expected true or false, got {ignore_case!r}")
        if not any(op in spec for op in _CASE_OPERATORS):
            raise _fail(_join(loc, IGNORE_CASE), f"applies to {', '.join(_CASE_OPERATORS)}: add one of them")
    return bool(ignore_case)


def _refers_to_fields(spec: Any) -> bool:
    """Whether a value spec uses a field operator anywhere, also inside its `not`, `any` or `all`."""
    if not isinstance(spec, Mapping):
        return False
    for op, arg in spec.items():
        if op in FIELD_OPERATORS or (op == "not" and _refers_to_fields(arg)):
            return True
        if op in ("any", "all") and isinstance(arg, list) and any(_refers_to_fields(item) for item in arg):
            return True
    return False


def _compile_pair_spec(spec: Any, loc: str) -> PairTest:
    """A value spec that uses field operators: those read the event, the others only the value."""
    if not _refers_to_fields(spec):
        value_test = _compile_spec(spec, loc)
        return lambda value, _event: value_test(value)
    ignore_case = _ignore_case(spec, loc)
    tests: list[PairTest] = []
    nested = {op: arg for op, arg in spec.items() if op in COMBINATORS and _refers_to_fields({op: arg})}
    plain = {op: arg for op, arg in spec.items() if op not in FIELD_OPERATORS and op not in nested}
    if not any(op in plain for op in SUBSTRING_OPERATORS):
        plain.pop(IGNORE_CASE, None)
    if plain:
        tests.append(_compile_pair_spec(plain, loc))
    for op, arg in spec.items():
        here = _join(loc, op)
        if op in FIELD_OPERATORS:
            try:
                tests.append(field_reference(str(op), arg, ignore_case))
            except ValueError as exc:
                raise _fail(here, str(exc)) from None
        elif op == "not" and op in nested:
            tests.append(_negate_pair(_compile_pair_spec(arg, here)))
        elif op in nested:  # a list for any or all, of which an item uses a field operator
            parts = tuple(_compile_pair_spec(item, _join(here, i)) for i, item in enumerate(arg))
            tests.append(any_pair(parts) if op == "any" else all_pair(parts))
    return tests[0] if len(tests) == 1 else all_pair(tuple(tests))


def _negate_pair(inner: PairTest) -> PairTest:
    return lambda value, event: not inner(value, event)


def _compile_operator(op: str, arg: Any, loc: str) -> ValueTest:
    if op == "equals":
        return _elementwise(_equals(arg, loc))
    if op == "in":
        return _elementwise(_in(arg, loc))
    if op == "glob":
        patterns = _strings(arg, loc)
        glob = re.compile("|".join(fnmatch.translate(p) for p in patterns))
        return _elementwise(lambda v: isinstance(v, str) and glob.match(v) is not None)
    if op == "regex":
        rx = _regex(_strings(arg, loc), loc)
        return _elementwise(lambda v: isinstance(v, str) and rx.search(v[:MAX_REGEX_INPUT]) is not None)
    if op == "exists":
        if not isinstance(arg, bool):
            raise _fail(loc, f"expected true or false, got {arg!r}")
        return (lambda v: v is not None) if arg else (lambda v: v is None)
    if op in ("gt", "gte", "lt", "lte"):
        return _elementwise(_compare(op, arg, loc))
    if op == "not":
        return _negate(_compile_spec(arg, loc))
    if op in ("any", "all"):
        if not isinstance(arg, list) or not arg:
            raise _fail(loc, "expected a non-empty list of operator specs")
        parts = tuple(_compile_spec(item, _join(loc, i)) for i, item in enumerate(arg))
        return _any_of(parts) if op == "any" else _all_of(parts)
    raise _fail(loc, f"unknown operator {op!r}; known: {', '.join(VALUE_OPERATORS)}")


def _substring(op: str, arg: Any, ignore_case: bool, loc: str) -> ValueTest:
    """`contains`, `startswith` or `endswith` one of the strings; with ignore_case both sides lowercased."""
    parts = _strings(arg, loc)
    needles = tuple(dict.fromkeys(p.lower() for p in parts)) if ignore_case else tuple(parts)
    if op == "contains":
        if len(needles) == 1:
            [needle] = needles
            found: Callable[[str], bool] = lambda v: needle in v  # noqa: E731
        else:
            found = lambda v: any(n in v for n in needles)  # noqa: E731
    elif op == "startswith":
        found = lambda v: v.startswith(needles)  # noqa: E731
    else:
        found = lambda v: v.endswith(needles)  # noqa: E731
    if ignore_case:
        return _elementwise(lambda v: v.__class__ is str and found(lowered(v)))
    return _elementwise(lambda v: isinstance(v, str) and found(v))


def _elementwise(test: ValueTest) -> ValueTest:
    def check(value: Any) -> bool:
        if value.__class__ is list:
            return any(test(item) for item in value)
        return test(value)

    return check


def _equals(expected: Any, loc: str) -> ValueTest:
    if expected is None:
        return lambda v: v is None
    if isinstance(expected, bool):
        # Python says True == 1; a rule author writing `true` means the boolean.
        return lambda v: v is expected
    if isinstance(expected, _NUMBERS):
        return lambda v: v.__class__ is not bool and v == expected
    if isinstance(expected, str):
        return lambda v: v == expected
    raise _fail(loc, f"expected a scalar (string, number, boolean or null), got {type(expected).__name__}")


def _in(values: Any, loc: str) -> ValueTest:
    if not isinstance(values, list) or not values:
        raise _fail(loc, "expected a non-empty list of values")
    bad = [v for v in values if v is not None and not isinstance(v, _SCALARS)]
    if bad:
        raise _fail(loc, f"expected scalars only, got {bad[0]!r}")
    bools = frozenset(v for v in values if isinstance(v, bool))
    others = frozenset(v for v in values if not isinstance(v, bool))

    def check(v: Any) -> bool:
        if v.__class__ is bool:
            return v in bools
        try:
            return v in others
        except TypeError:  # unhashable (a nested object)
            return False

    return check


def _strings(arg: Any, loc: str) -> list[str]:
    items = arg if isinstance(arg, list) else [arg]
    if not items or not all(isinstance(item, str) and item for item in items):
        raise _fail(loc, "expected a non-empty string or a list of them")
    return items


def _regex(patterns: list[str], loc: str) -> re.Pattern[str]:
    for pattern in patterns:
        if len(pattern) > MAX_REGEX_LENGTH:
            raise _fail(loc, f"pattern longer than {MAX_REGEX_LENGTH} characters")
        if _NESTED_QUANTIFIER.search(pattern):
            raise _fail(loc, f"pattern {pattern!r} nests unbounded repetition (catastrophic backtracking)")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _fail(loc, f"invalid regular expression {pattern!r}: {exc}") from None
    if len(patterns) == 1:
        return re.compile(patterns[0])
    return re.compile("|".join(f"(?:{p})" for p in patterns))


def _compare(op: str, bound: Any, loc: str) -> ValueTest:
    if isinstance(bound, bool) or not isinstance(bound, _NUMBERS):
        raise _fail(loc, f"expected a number, got {bound!r}")
    numeric = (int, float)
    if op == "gt":
        return lambda v: v.__class__ in numeric and v > bound
    if op == "gte":
        return lambda v: v.__class__ in numeric and v >= bound
    if op == "lt":
        return lambda v: v.__class__ in numeric and v < bound
    return lambda v: v.__class__ in numeric and v <= bound


def _pinned_event_types(raw: Mapping[str, Any]) -> frozenset[str] | None:
    """The event types a map can match, when its top level pins `event_type` (for the rule index)."""
    return _pinned(raw.get("event_type"))


def _pinned(spec: Any) -> frozenset[str] | None:
    """The strings a value spec accepts, when it is a string, `equals` one or `in` a list of them."""
    if isinstance(spec, str):
        return frozenset([spec])
    if isinstance(spec, Mapping) and len(spec) == 1:
        if isinstance(spec.get("equals"), str):
            return frozenset([spec["equals"]])
        values = spec.get("in")
        if isinstance(values, list) and values and all(isinstance(v, str) for v in values):
            return frozenset(values)
    return None
