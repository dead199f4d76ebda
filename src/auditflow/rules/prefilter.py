"""Skip the rules an event cannot match, before any of them is evaluated: by the strings they pin
top-level fields to (a Sigma logsource's `source_service` or `details.event.dataset`), and by the
substrings they need, checking those of many rules at once.

A rule whose condition needs one of some case-insensitive substrings in a field (`Condition.needles`:
Sigma keyword rules over the raw line, `contains` selections) is evaluated only when one occurs.
Scanning the line once per substring costs time in the number of substrings, so each substring is
keyed by a whole word it holds (a run of letters and digits with a non-word character on both
sides inside the substring, hence a whole word of the line too): the line is split into words
once, and only the substrings whose word is among them are searched for. Substrings without such a
word are searched for on every event.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from auditflow.model.event import Event
from auditflow.rules.conditions import Needles, lowered
from auditflow.rules.fields import Getter, make_getter

P = TypeVar("P")
_WORD = re.compile(r"[^\W_]+")


def _key_word(needle: str) -> str | None:
    """The longest word of the substring that is whole, or None when it has none."""
    words = [m.group() for m in _WORD.finditer(needle) if m.start() > 0 and m.end() < len(needle)]
    return max(words, key=len) if words else None


class _FieldNeedles:
    """The needles of one field: which plan positions each one lets through."""

    def __init__(self, path: str) -> None:
        self.getter: Getter = make_getter(path)
        self.positions: set[int] = set()
        self.by_word: dict[str, dict[str, set[int]]] = {}
        self.loose: dict[str, set[int]] = {}

    def add(self, needles: frozenset[str], position: int) -> None:
        self.positions.add(position)
        for needle in needles:
            word = _key_word(needle)
            bucket = self.loose if word is None else self.by_word.setdefault(word, {})
            bucket.setdefault(needle, set()).add(position)

    def passing(self, event: Event, chosen: set[int]) -> None:
        value = self.getter(event)
        if value.__class__ is not str:
            chosen.update(self.positions)  # a list or no value: let the rules decide
            return
        line = lowered(value)
        for needle, positions in self.loose.items():
            if needle in line:
                chosen.update(positions)
        if self.by_word:
            for word in self.by_word.keys() & set(_WORD.findall(line)):
                for needle, positions in self.by_word[word].items():
                    if needle in line:
                        chosen.update(positions)


class _NeedleGate(Generic[P]):
    """The plans to evaluate for an event: those without needles, and those whose needles occur."""

    __slots__ = ("_always", "_fields", "_gated", "_plans")

    def __init__(self, plans: Sequence[P], needles_of: Callable[[P], Needles | None]) -> None:
        self._plans = tuple(plans)
        by_path: dict[str, _FieldNeedles] = {}
        gated: set[int] = set()
        for position, plan in enumerate(self._plans):
            needles = needles_of(plan)
            if needles is None or not needles[1]:
                continue
            gated.add(position)
            by_path.setdefault(needles[0], _FieldNeedles(needles[0])).add(needles[1], position)
        self._gated = frozenset(gated)
        self._fields = tuple(by_path.values())
        self._always = tuple(plan for i, plan in enumerate(self._plans) if i not in gated)

    def select(self, event: Event) -> Sequence[P]:
        if not self._fields:
            return self._plans
        chosen: set[int] = set()
        for field_needles in self._fields:
            field_needles.passing(event, chosen)
        if not chosen:
            return self._always
        gated = self._gated
        return [plan for i, plan in enumerate(self._plans) if i not in gated or i in chosen]


Pins = Mapping[str, frozenset[str]]
# Fields that name where an event comes from (what a Sigma logsource selects): few values, so a
# selection per combination stays small. Fields such as users or addresses would not.
INDEXED_FIELDS = ("source_service", "details.event.dataset")
MAX_PIN_KEYS = 4096  # distinct pinned-field values remembered; beyond, selections are not cached


class RuleGate(Generic[P]):
    """The plans to evaluate for an event, in order: those whose pinned fields accept the event's
    values (one selection per distinct combination of values, remembered), then by needles."""

    __slots__ = ("_by_key", "_getters", "_needles_of", "_paths", "_pins", "_plans", "_unkeyed")

    def __init__(
        self,
        plans: Sequence[P],
        needles_of: Callable[[P], Needles | None],
        pins_of: Callable[[P], Pins] = lambda _plan: {},
    ) -> None:
        self._plans = tuple(plans)
        self._needles_of = needles_of
        self._pins = [pins_of(plan) for plan in self._plans]
        self._paths = tuple(path for path in INDEXED_FIELDS if any(path in pins for pins in self._pins))
        self._getters = tuple(make_getter(path) for path in self._paths)
        self._by_key: dict[tuple[Any, ...], _NeedleGate[P]] = {}
        self._unkeyed = _NeedleGate(self._plans, needles_of)

    def select(self, event: Event) -> Sequence[P]:
        if not self._getters:
            return self._unkeyed.select(event)
        key = tuple(get(event) for get in self._getters)
        gate = self._by_key.get(key) if all(v is None or v.__class__ is str for v in key) else None
        if gate is None:
            if not all(v is None or v.__class__ is str for v in key):
                return self._unkeyed.select(event)  # a list or an object: the rules decide
            gate = self._narrowed(key)
            if len(self._by_key) < MAX_PIN_KEYS:
                self._by_key[key] = gate
        return gate.select(event)

    def _narrowed(self, key: tuple[Any, ...]) -> _NeedleGate[P]:
        values = dict(zip(self._paths, key, strict=True))
        kept = [
            plan
            for plan, pins in zip(self._plans, self._pins, strict=True)
            if all(values[path] in allowed for path, allowed in pins.items() if path in values)
        ]
        return _NeedleGate(kept, self._needles_of)
