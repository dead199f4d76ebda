"""The field operators of conditions: a field's value compared with another field of the same event.

`equals_field` has the value semantics of `equals` (strings case-sensitively, a number is not its
text, booleans only equal booleans); `contains_field`, `startswith_field` and `endswith_field`
compare strings, case-insensitively with `ignore_case: true`. A missing (or null) field on either
side fails the test; when either value is a list, the test holds if it holds for one pair of elements.
These are Sigma's `fieldref` modifier, alone or after `contains`, `startswith` or `endswith`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from auditflow.model.event import Event
from auditflow.rules.fields import check_field_path, make_getter

PairTest = Callable[[Any, Event], bool]  # a value test that also reads other fields of the event
SUBSTRING_FIELD_OPERATORS = ("contains_field", "startswith_field", "endswith_field")
FIELD_OPERATORS = ("equals_field", *SUBSTRING_FIELD_OPERATORS)

_NUMBERS = (int, float)
_SUBSTRING: dict[str, Callable[[str, str], bool]] = {
    "contains_field": str.__contains__,
    "startswith_field": str.startswith,
    "endswith_field": str.endswith,
}


def field_reference(op: str, path: Any, ignore_case: bool) -> PairTest:
    """The test of `op: path`; ValueError (the message without its location) when `path` is not a
    field path."""
    if not isinstance(path, str) or not path:
        raise ValueError(f"expected the path of another field of the event, e.g. user.name, got {path!r}")
    check_field_path(path)
    other = make_getter(path)
    compare = same_scalar if op == "equals_field" else _substring(_SUBSTRING[op], ignore_case)

    def test(value: Any, event: Event) -> bool:
        ref = other(event)
        if value is None or ref is None:
            return False
        values = value if value.__class__ is list else (value,)
        refs = ref if ref.__class__ is list else (ref,)
        return any(compare(v, r) for r in refs for v in values)

    return test


def same_scalar(value: Any, ref: Any) -> bool:
    """`equals` between two event values: objects and nulls equal nothing."""
    if value.__class__ is bool or ref.__class__ is bool:
        return value is ref
    if value.__class__ is str:
        return ref.__class__ is str and value == ref
    return value.__class__ in _NUMBERS and ref.__class__ in _NUMBERS and value == ref


def _substring(found: Callable[[str, str], bool], ignore_case: bool) -> Callable[[Any, Any], bool]:
    def compare(value: Any, ref: Any) -> bool:
        if value.__class__ is not str or ref.__class__ is not str:
            return False
        return found(value.lower(), ref.lower()) if ignore_case else found(value, ref)

    return compare


def any_pair(parts: tuple[PairTest, ...]) -> PairTest:
    return lambda value, event: any(p(value, event) for p in parts)


def all_pair(parts: tuple[PairTest, ...]) -> PairTest:
    return lambda value, event: all(p(value, event) for p in parts)
