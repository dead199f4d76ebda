"""Skip the rules an event cannot match, before any of them is evaluated, by what their conditions
require ([requirements](requirements.py)): values some fields must equal, substrings some fields
must hold. The checks of all rules are shared, so an event costs a few lookups, not one per rule.

Equalities form a discrimination tree. A node tests the field that most of its rules require
values of: the event's value is reduced to the values some rule names (a list to those of its
elements), and that reduction picks the child that holds only the rules it satisfies, plus the
rules that require nothing of the field. Children are built when first needed and remembered, so
each distinct combination of values costs one walk down the tree. A value the node cannot decide
(a non-ASCII string against a case-insensitive value, an object of another type) goes to a child
that keeps every rule of the node. The detector's gates are per event type, and decide what rules
require of `event_type` when they are built.

At a leaf, a rule that needs one of some substrings in a field is evaluated only when one occurs
in the lowercased value. Looking for each substring costs time in their number, so a field with
many is scanned once by RE2 for all of them (`_FieldNeedles`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeGuard, TypeVar

try:
    import re2  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - installed with the sigma extra
    re2 = None

from auditflow.model.event import Event
from auditflow.rules.conditions import lowered
from auditflow.rules.fields import Getter, make_getter
from auditflow.rules.requirements import Equals, Excludes, Requirement, Requirements, Substrings, Value

RE2_MAX_MEM = 256 << 20  # bytes per compiled needle scan

P = TypeVar("P")
# Fewer needles than this are looked for one by one: a call into RE2 costs about as much as
# looking for twenty substrings in a line of a few hundred characters.
RE2_FROM = 24
MAX_CHILDREN = 1024  # distinct values remembered per tree node; beyond, children are built per event
MAX_NODES = 4096  # nodes, and leaves, remembered per gate
_UNDECIDED = object()  # the token of a value a node cannot reduce
_NEVER_EQUAL = frozenset({type(None), bool, list, dict})


class _FieldNeedles:
    """The needles of one field: which plan positions each one lets through.

    With RE2 (google-re2, which the `sigma` extra installs) and many needles, one scan of the
    alternation of every needle tells whether any occurs, in time linear in the line whatever the number of needles;
    most lines hold none. For a line that holds one, an RE2 set names every needle that occurs;
    should its automaton run out of memory (it then names none, though the scan found one), each
    needle is looked for. Without RE2, each needle is looked for on every line.
    """

    def __init__(self, path: str) -> None:
        self.getter: Getter = make_getter(path)
        self.positions: set[int] = set()
        self.ascii_only: set[int] = set()  # positions decided only for ASCII values
        self.needles: dict[str, set[int]] = {}
        self._ordered: list[tuple[str, set[int]]] = []
        self._any: Any = None  # re2 pattern: does any needle occur?
        self._which: Any = None  # re2 set: which needles occur?

    def add(self, needles: Substrings, position: int) -> None:
        self.positions.add(position)
        if not needles.exact:
            self.ascii_only.add(position)
        for needle in needles.needles:
            self.needles.setdefault(needle, set()).add(position)

    def compile(self, re2_from: int | None) -> None:
        self._ordered = list(self.needles.items())
        if re2_from is None or re2 is None or len(self._ordered) < re2_from:
            return
        escaped = [re2.escape(needle) for needle, _ in self._ordered]
        options = re2.Options()
        # Thousands of needles make a large automaton: give RE2 room for its DFA (beyond its 8 MiB
        # default it falls back to a slower matcher and writes an error line per search to stderr).
        options.max_mem = RE2_MAX_MEM
        options.log_errors = False
        try:
            self._any = re2.compile("|".join(escaped), options=options)
            which = re2.Set.SearchSet(options)
            for pattern in escaped:
                which.Add(pattern)
            which.Compile()
            self._which = which
        except re2.error:
            self._any = self._which = None  # too large for RE2: look for each needle

    def passing(self, event: Event, chosen: set[int]) -> None:
        value = self.getter(event)
        if value.__class__ is not str:
            if value.__class__ is list or isinstance(value, str):
                chosen.update(self.positions)  # a list or an enum: let the rules decide
            return  # None, numbers and objects hold no substring
        if self.ascii_only and not value.isascii():
            chosen.update(self.ascii_only)
        line = lowered(value)
        if self._any is not None:
            try:
                if self._any.search(line) is None:
                    return
                found = self._which.Match(line)
            except UnicodeEncodeError:  # a lone surrogate: not UTF-8
                found = None
            if found is not None:
                for index in found:
                    chosen.update(self._ordered[index][1])
                return
        for needle, positions in self._ordered:
            if needle in line:
                chosen.update(positions)


def _best_substrings(found: Requirements) -> Substrings | None:
    """The substring requirement least likely to hold: the one whose shortest needle is longest."""
    candidates = [r for r in found if isinstance(r, Substrings)]
    return max(candidates, key=lambda r: (min(map(len, r.needles)), r.exact), default=None)


class _NeedleGate(Generic[P]):
    """The plans to evaluate for an event: those without needles, and those whose needles occur."""

    __slots__ = ("_always", "_fields", "_gated", "_plans")

    def __init__(self, plans: Sequence[P], found: Sequence[Requirements], re2_from: int | None) -> None:
        self._plans = tuple(plans)
        by_path: dict[str, _FieldNeedles] = {}
        gated: set[int] = set()
        for position, requirements in enumerate(found):
            needles = _best_substrings(requirements)
            if needles is None:
                continue
            gated.add(position)
            by_path.setdefault(needles.path, _FieldNeedles(needles.path)).add(needles, position)
        for field_needles in by_path.values():
            field_needles.compile(re2_from)
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


View = tuple[str, bool]  # (field path, folded)


class _Tree(Generic[P]):
    """What the nodes of one gate share: its plans and their requirements, and the nodes and leaves
    built so far, one per distinct set of plans (and fields already tested), so paths that narrow
    to the same plans end in the same node. Past `MAX_NODES`, new ones are built per event."""

    def __init__(self, plans: Sequence[P], found: Sequence[Requirements], re2_from: int | None) -> None:
        self.plans = tuple(plans)
        self.found = tuple(found)
        self.re2_from = re2_from
        self.nodes: dict[tuple[tuple[int, ...], frozenset[View]], _Node[P]] = {}
        self.leaves: dict[tuple[int, ...], _NeedleGate[P]] = {}

    def node(self, positions: tuple[int, ...], used: frozenset[View]) -> _Node[P]:
        node = self.nodes.get((positions, used))
        if node is None:
            node = _Node(self, positions, used)
            if len(self.nodes) < MAX_NODES:
                self.nodes[positions, used] = node
        return node

    def leaf(self, positions: tuple[int, ...]) -> _NeedleGate[P]:
        leaf = self.leaves.get(positions)
        if leaf is None:
            leaf = _NeedleGate([self.plans[i] for i in positions], [self.found[i] for i in positions], self.re2_from)
            if len(self.leaves) < MAX_NODES:
                self.leaves[positions] = leaf
        return leaf


class _Node(Generic[P]):
    """One test of the discrimination tree, or a leaf (`view` None) that gates by needles."""

    __slots__ = ("_children", "_folded", "_getter", "_known", "_leaf", "_positions", "_tree", "_used", "_view")

    def __init__(self, tree: _Tree[P], positions: tuple[int, ...], used: frozenset[View]) -> None:
        self._tree = tree
        self._positions = positions
        self._used = used
        counts: dict[View, int] = {}
        for i in positions:
            for view in {(r.path, r.folded) for r in tree.found[i] if not isinstance(r, Substrings)} - used:
                counts[view] = counts.get(view, 0) + 1
        self._view = max(counts, key=counts.__getitem__) if counts else None
        self._children: dict[Any, _Node[P]] = {}
        if self._view is None:
            self._leaf: _NeedleGate[P] | None = tree.leaf(positions)
            return
        self._leaf = None
        path, self._folded = self._view
        self._getter = make_getter(path)
        view = self._view
        self._known = frozenset().union(*(r.values for i in positions for r in tree.found[i] if _on_view(r, view)))

    def select(self, event: Event) -> Sequence[P]:
        node = self
        while node._leaf is None:  # a loop, not recursion: this runs for every event
            value = node._getter(event)
            if value.__class__ is str and not node._folded:
                token = value if value in node._known else None
            else:
                token = node._token(value)
            child = node._children.get(token)
            if child is None:
                child = node._child(token)
                if len(node._children) < MAX_CHILDREN:
                    node._children[token] = child
            node = child
        return node._leaf.select(event)

    def _token(self, value: Any) -> Any:
        """The values of the rules that this value is, or holds; `_UNDECIDED` when that is not sure."""
        if value.__class__ is list:
            # an element that is a list or an object equals no value, as in the conditions
            tokens = tuple(map(self._reduce, value))
            if _UNDECIDED in tokens:
                return _UNDECIDED
            return tuple(t for t in tokens if t is not None) or None
        return self._reduce(value)

    def _reduce(self, value: Any) -> Any:
        cls = value.__class__
        if cls is str:
            if self._folded:
                if not value.isascii():
                    return _UNDECIDED
                value = value.lower()
        elif cls is not int and cls is not float:
            # None, booleans (which the conditions compare to booleans only), lists inside lists
            # and objects parsed from JSON equal no string or number; other objects (enums,
            # decimals put in by a producer in this process) might.
            return None if cls in _NEVER_EQUAL else _UNDECIDED
        return value if value in self._known else None

    def _child(self, token: Any) -> _Node[P]:
        assert self._view is not None
        view, used, found = self._view, self._used | {self._view}, self._tree.found
        if token is _UNDECIDED:
            return self._tree.node(self._positions, used)
        present = frozenset(token if token.__class__ is tuple else (token,)) - {None}
        kept = tuple(i for i in self._positions if all(_accepts(r, present) for r in found[i] if _on_view(r, view)))
        return self._tree.node(kept, used)


def _on_view(requirement: Requirement, view: View) -> TypeGuard[Equals | Excludes]:
    return not isinstance(requirement, Substrings) and (requirement.path, requirement.folded) == view


def _accepts(requirement: Equals | Excludes, present: frozenset[Value]) -> bool:
    """Whether values that are (or hold) exactly `present` among the node's known ones may meet it."""
    if isinstance(requirement, Equals):
        return not requirement.values.isdisjoint(present)
    return requirement.values.isdisjoint(present)


class RuleGate(Generic[P]):
    """The plans to evaluate for an event, in their order: those whose requirements the event may
    meet (`requirements_of` tells each plan's). `fixed` names values every event given to this gate
    has (the event type of the detector's per-type gates): requirements on them are decided once,
    here. A field's substrings are scanned for with RE2 from `re2_from` of them on (None: never)."""

    __slots__ = ("_root",)

    def __init__(
        self,
        plans: Sequence[P],
        requirements_of: Callable[[P], Requirements],
        *,
        fixed: Mapping[str, str] | None = None,
        re2_from: int | None = RE2_FROM,
    ) -> None:
        kept: list[P] = []
        found: list[Requirements] = []
        for plan in plans:
            requirements = requirements_of(plan)
            if fixed:
                decided = [r for r in requirements if not isinstance(r, Substrings) and r.path in fixed]
                if any(_refuses(r, fixed[r.path]) for r in decided):
                    continue  # cannot match any event of this gate
                requirements = tuple(r for r in requirements if r not in decided)
            kept.append(plan)
            found.append(requirements)
        self._root: _Node[P] = _Tree(kept, found, re2_from).node(tuple(range(len(kept))), frozenset())

    def select(self, event: Event) -> Sequence[P]:
        return self._root.select(event)


def _refuses(requirement: Equals | Excludes, value: str) -> bool:
    if requirement.folded:
        if not value.isascii():
            return False  # undecided: keep the rule
        value = value.lower()
    return not _accepts(requirement, frozenset([value]))
