"""What a condition cannot hold without, read off its `where:` mapping once, for the rule gate.

A requirement is necessary, never sufficient: the gate skips a rule only when the event fails one
of its requirements, and every rule it lets through is evaluated in full. Two kinds:

* `Equals`: the field's value (or one element of a list) is one of some strings: from `field: x`,
  `equals`, `in`, and from regular expressions that match exactly one literal such as Sigma's
  `^(?is:EXECVE)\\Z` (compared lowercased, `folded`);
* `Substrings`: the field's lowercased string value holds one of some substrings: from `contains`,
  `startswith`, `endswith`, and from the literal text a regular expression must match.

Case-insensitive regular expressions match some non-ASCII characters that lowercasing does not
map to their ASCII partners (the long s, U+017F, matches `s`), so a requirement read from a regular expression or a
case-sensitive operator (`exact` False) decides only ASCII values; the gate lets other values through.
`all` adds the requirements of each part, `any` keeps what every branch requires of the same field
(the union of their values), `not` requires nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from auditflow.rules.conditions import COMBINATORS, IGNORE_CASE, SUBSTRING_OPERATORS
from auditflow.rules.schema import MatchRule, Rule, ThresholdRule

Value = str | int | float


@dataclass(frozen=True, slots=True)
class Equals:
    """The value, or an element of it, is one of `values` (lowercased ASCII when `folded`)."""

    path: str
    folded: bool
    values: frozenset[Value]


@dataclass(frozen=True, slots=True)
class Excludes:
    """Neither the value nor an element of it is one of `values` (compared exactly)."""

    path: str
    values: frozenset[Value]
    folded: bool = False  # for the gate's views, which Equals share


@dataclass(frozen=True, slots=True)
class Substrings:
    """The lowercased string value holds one of `needles`; `exact`: decided for any string, not
    only ASCII ones."""

    path: str
    needles: frozenset[str]
    exact: bool


Requirement = Equals | Excludes | Substrings
Requirements = tuple[Requirement, ...]


def requirements(raw: Any) -> Requirements:
    """The requirements of a condition map (what `compile_where` accepts); () when it has none."""
    if not isinstance(raw, Mapping):
        return ()
    return tuple(dict.fromkeys(_map(raw)))


def rule_requirements(rule: Rule) -> Requirements:
    """What an event needs for a rule to be worth evaluating: a sequence, what one of its steps may."""
    if isinstance(rule, MatchRule | ThresholdRule):
        return requirements(rule.where.raw)
    return either([requirements(step.where.raw) for step in rule.steps])


def either(alternatives: Sequence[Requirements]) -> Requirements:
    """What holds whenever one of the alternatives holds (a sequence rule's steps, `any`)."""
    return tuple(dict.fromkeys(_either([list(a) for a in alternatives])))


def _map(raw: Mapping[str, Any]) -> list[Requirement]:
    found: list[Requirement] = []
    for key, spec in raw.items():
        if key == "all" and isinstance(spec, list):
            for item in spec:
                found += _map(item) if isinstance(item, Mapping) else []
        elif key == "any" and isinstance(spec, list):
            found += _either([_map(item) if isinstance(item, Mapping) else [] for item in spec])
        elif key == "not" and isinstance(spec, Mapping) and len(spec) == 1:
            [(path, inner)] = spec.items()
            found += _excluded(path, inner) if path not in COMBINATORS else []
        elif key == "event_type":  # the detector indexes the event types a rule names itself
            found += [r for r in _spec(key, spec) if isinstance(r, Excludes)]
        elif key != "not":
            found += _spec(key, spec)
    return found


def _excluded(path: str, spec: Any) -> list[Requirement]:
    """`not` of a spec that is an equality: the values the field must not be (nor hold)."""
    plain = not isinstance(spec, Mapping) or (len(spec) == 1 and ("equals" in spec or "in" in spec))
    equal = _spec(path, spec) if plain else []
    return [Excludes(path, r.values) for r in equal if isinstance(r, Equals)]


def _spec(path: str, spec: Any) -> list[Requirement]:
    if not isinstance(spec, Mapping):
        return [Equals(path, False, frozenset([spec]))] if _scalars([spec]) else []
    found: list[Requirement] = []
    ignore_case = spec.get(IGNORE_CASE) is True
    for op, arg in spec.items():
        if op == "equals" and _scalars([arg]):
            found.append(Equals(path, False, frozenset([arg])))
        elif op == "in" and _scalars(arg):
            found.append(Equals(path, False, frozenset(arg)))
        elif op in SUBSTRING_OPERATORS:
            parts = arg if isinstance(arg, list) else [arg]
            if _strings(parts):
                found.append(Substrings(path, frozenset(p.lower() for p in parts), ignore_case))
        elif op == "regex":
            patterns = arg if isinstance(arg, list) else [arg]
            found += _regex(path, patterns) if _strings(patterns) else []
        elif op == "not":
            found += _excluded(path, arg)
        elif op == "all" and isinstance(arg, list):
            for item in arg:
                found += _spec(path, item)
        elif op == "any" and isinstance(arg, list) and arg:
            found += _either([_spec(path, item) for item in arg])
    return found


def _scalars(values: Any) -> bool:
    """Strings and numbers, which equal only what they are equal to in Python: not booleans (the
    conditions compare those by identity, and `True == 1`) nor None."""
    return isinstance(values, list) and bool(values) and all(v.__class__ in (str, int, float) for v in values)


def _strings(values: Any) -> bool:
    return isinstance(values, list) and bool(values) and all(isinstance(v, str) and v for v in values)


def _either(branches: list[list[Requirement]]) -> list[Requirement]:
    """For each field and kind every branch requires something of, the union over the branches
    (of each branch's narrowest requirement there)."""
    if not branches or not all(branches):
        return []
    merged: list[Requirement] = []
    for first in branches[0]:
        key = _kind(first)
        if any(_kind(r) == key for r in merged):
            continue
        chosen = [min((r for r in branch if _kind(r) == key), key=_size, default=None) for branch in branches]
        if any(r is None for r in chosen):
            continue
        if isinstance(first, Equals):
            merged.append(Equals(first.path, first.folded, frozenset().union(*(_values(r) for r in chosen))))
        elif isinstance(first, Excludes):
            common = frozenset.intersection(*(r.values for r in chosen if isinstance(r, Excludes)))
            merged += [Excludes(first.path, common)] if common else []
        else:
            subs = [r for r in chosen if isinstance(r, Substrings)]
            needles = frozenset().union(*(r.needles for r in subs))
            merged.append(Substrings(first.path, needles, all(r.exact for r in subs)))
    return merged


def _kind(r: Requirement) -> tuple[str, str, bool]:
    if isinstance(r, Substrings):
        return ("substrings", r.path, False)
    return (r.__class__.__name__, r.path, r.folded)


def _size(r: Requirement) -> int:
    if isinstance(r, Excludes):
        return -len(r.values)  # the narrowest excludes most
    return len(r.values) if isinstance(r, Equals) else len(r.needles)


def _values(r: Requirement | None) -> frozenset[Value]:
    return r.values if isinstance(r, Equals) else frozenset()


def _regex(path: str, patterns: list[str]) -> list[Requirement]:
    """Alternatives: equal to one of some literals when every pattern is one, else a substring
    each alternative needs (its longest literal run)."""
    analysed: list[_Analysis] = []
    for pattern in patterns:
        found = _analyse(pattern)
        if found is None:
            return []
        analysed += found
    if all(a.whole is not None for a in analysed):
        folded = any(a.folded for a in analysed)
        values = frozenset(a.whole.lower() if folded else a.whole for a in analysed if a.whole is not None)
        return [Equals(path, folded, values)]
    best = [max(a.runs, key=len, default="") for a in analysed]
    return [Substrings(path, frozenset(best), False)] if all(best) else []


@dataclass(frozen=True, slots=True)
class _Analysis:
    whole: str | None  # the one string the pattern matches in full, if it is one
    folded: bool  # some of that string is matched case-insensitively
    runs: tuple[str, ...]  # lowercased literal text every match contains


class _Unknown(Exception):
    """A construct the analysis does not follow: the pattern gives no requirement."""


_QUANTIFIER = re.compile(r"[*+?]|\{\d*(?:,\d*)?\}")
_OPAQUE = object()  # something of unknown length: a class, `.`, a quantified atom, a lookaround
_START, _END = object(), object()
_ONE_CHARACTER_ESCAPES = frozenset("dDsSwWbBnrtfva")


@lru_cache(maxsize=4096)
def _analyse(pattern: str) -> tuple[_Analysis, ...] | None:
    """One analysis per top-level alternative of the pattern, or None when it is not understood."""
    try:
        items, end = _sequence(pattern, 0, ignore_case=False, multiline=False)
    except _Unknown:
        return None
    if end != len(pattern):
        return None
    alternatives = items if items and isinstance(items[0], list) else [items]
    return tuple(_summarise(atoms) for atoms in alternatives)


def _summarise(atoms: list[Any]) -> _Analysis:
    runs: list[str] = []
    run: list[str] = []
    folded = False
    last = len(atoms) - 1
    literal = last >= 2 and atoms[0] is _START and atoms[last] is _END
    for index, atom in enumerate(atoms):
        if isinstance(atom, tuple):
            run.append(atom[0].lower())
            folded = folded or atom[1]
            continue
        if run:
            runs.append("".join(run))
            run = []
        if atom is _OPAQUE or (atom is _START and index != 0) or (atom is _END and index != last):
            literal = False
    if run:
        runs.append("".join(run))
    whole = "".join(a[0] for a in atoms[1:-1]) if literal else None
    return _Analysis(whole, folded, tuple(runs))


def _sequence(p: str, i: int, *, ignore_case: bool, multiline: bool) -> tuple[list[Any], int]:
    """Atoms from `i` up to an unmatched `)` or the end; a list of alternatives (lists) when the
    sequence has `|`."""
    alternatives: list[list[Any]] = []
    atoms: list[Any] = []
    while i < len(p):
        c = p[i]
        if c == ")":
            break
        if c == "|":
            alternatives.append(atoms)
            atoms = []
            i += 1
            continue
        if c == "(":
            inner, i = _group(p, i, ignore_case=ignore_case, multiline=multiline)
            atom: Any = inner
        elif c == "[":
            i = _skip_class(p, i)
            atom = [_OPAQUE]
        elif c == "\\":
            if i + 1 >= len(p):
                raise _Unknown
            e = p[i + 1]
            i += 2
            if e == "A":
                atom = [_START]
            elif e == "Z":
                atom = [_END]
            elif e.isascii() and not e.isalnum():
                atom = [(e, ignore_case)]
            elif e in _ONE_CHARACTER_ESCAPES or not e.isascii():
                atom = [_OPAQUE]
            else:
                raise _Unknown  # \x41, \u..., \N{...}, back references: not followed
        elif c == "^":
            atom = [_OPAQUE if multiline else _START]
            i += 1
        elif c in ".$":
            atom = [_OPAQUE]
            i += 1
        elif c in "*+?" or (c == "{" and _QUANTIFIER.match(p, i)):
            raise _Unknown  # a quantifier with nothing before it
        else:
            atom = [(c, ignore_case)] if c.isascii() else [_OPAQUE]
            i += 1
        quantified = _QUANTIFIER.match(p, i)
        if quantified:
            i = quantified.end()
            if i < len(p) and p[i] in "?+":  # lazy or possessive
                i += 1
            atom = [_OPAQUE]
        if atom and isinstance(atom[0], list):  # an alternation group: nothing certain inside
            atom = [_OPAQUE]
        atoms.extend(atom)
    if alternatives:
        alternatives.append(atoms)
        return alternatives, i
    return atoms, i


def _group(p: str, i: int, *, ignore_case: bool, multiline: bool) -> tuple[list[Any], int]:
    """A parenthesised group at `i`: its atoms (flags applied) and the index after `)`."""
    j = i + 1
    if p.startswith("?", j):
        j += 1
        if p.startswith(("=", "!", "<=", "<!"), j):  # lookaround: zero width, nothing required
            j += 2 if p[j] == "<" else 1
            _, j = _sequence(p, j, ignore_case=ignore_case, multiline=multiline)
            return [_OPAQUE], _close(p, j)
        if p.startswith("P<", j):
            j = p.index(">", j) + 1
        elif p[j] != ":":
            flags = re.match(r"([aiLmsux]*)(?:-([imsx]*))?(:|\))", p[j:])
            if flags is None or "x" in flags.group(1) or flags.group(3) == ")":
                raise _Unknown  # verbose mode, global flags, comments, conditionals
            on, off = flags.group(1), flags.group(2) or ""
            ignore_case = (ignore_case or "i" in on) and "i" not in off
            multiline = (multiline or "m" in on) and "m" not in off
            j += flags.end() - 1
        j += 1 if p[j] == ":" else 0
    atoms, j = _sequence(p, j, ignore_case=ignore_case, multiline=multiline)
    return atoms, _close(p, j)


def _close(p: str, j: int) -> int:
    if j >= len(p) or p[j] != ")":
        raise _Unknown
    return j + 1


def _skip_class(p: str, i: int) -> int:
    j = i + 1
    if p.startswith("^", j):
        j += 1
    if p.startswith("]", j):
        j += 1
    while j < len(p) and p[j] != "]":
        j += 2 if p[j] == "\\" else 1
    if j >= len(p):
        raise _Unknown
    return j + 1


def describe(found: Iterable[Requirement]) -> list[str]:
    """Requirements as short text, for tests and debugging."""
    return [
        f"{r.path} {'~=' if r.folded else '=='} {sorted(r.values)}"
        if isinstance(r, Equals)
        else f"{r.path} != {sorted(r.values)}"
        if isinstance(r, Excludes)
        else f"{r.path} has {sorted(r.needles)}{'' if r.exact else ' (ascii)'}"
        for r in found
    ]
