"""A Sigma condition tree (as pySigma parses and resolves it) as an AuditFlow `where:` mapping.

pySigma resolves identifiers, `1 of`/`all of` selectors, wildcards in them and parentheses into a
tree of AND, OR and NOT whose leaves are `field = value` or bare keyword values; this module walks
that tree. OR-ed values of one field are folded into one `in`, one substring list or one regex
list, which the rule compiler turns into a single test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionItem,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.types import SigmaString

from auditflow.rules.sigma.errors import UnsupportedRule
from auditflow.rules.sigma.logsources import LogSource
from auditflow.rules.sigma.values import field_spec, keyword_spec

Where = dict[str, Any]
Node = ConditionItem | ConditionFieldEqualsValueExpression | ConditionValueExpression | None
KEYWORD_FIELD = "details.event.original"
_COMBINATORS = ("any", "all", "not")


def to_where(node: Node, source: LogSource, record: str | None = None) -> Where:
    """`record` is the audit record type the enclosing selection pins (`type: EXECVE`), which
    tells whose `a0` ... a field means."""
    if isinstance(node, ConditionFieldEqualsValueExpression):
        spec = field_spec(node.value, lambda other: source.targets(other, record))
        paths = source.targets(node.field, record)
        return {paths[0]: spec} if len(paths) == 1 else {"any": [{path: spec} for path in paths]}
    if isinstance(node, ConditionValueExpression):
        return {KEYWORD_FIELD: keyword_spec(node.value)}
    if isinstance(node, ConditionNOT):
        return {"not": to_where(node.args[0], source, record)}
    if isinstance(node, ConditionAND):
        record = _record_type(node.args) or record
        return _and([to_where(arg, source, record) for arg in node.args])
    if isinstance(node, ConditionOR):
        return _or([to_where(arg, source, record) for arg in node.args])
    if node is None:
        raise UnsupportedRule("the detection is empty")
    raise UnsupportedRule(f"condition element {type(node).__name__} is not supported")


def _record_type(args: Sequence[Node]) -> str | None:
    """The one record type `type: X` (or `type: [X, ...]` of one type) among AND-ed items, upper case."""
    types: set[str] = set()
    for arg in args:
        items = arg.args if isinstance(arg, ConditionOR) else [arg]
        for item in items:
            if (
                isinstance(item, ConditionFieldEqualsValueExpression)
                and item.field == "type"
                and isinstance(item.value, SigmaString)
                and not item.value.contains_special()
            ):
                types.add(item.value.to_plain().upper())
    return types.pop() if len(types) == 1 else None


def _and(parts: list[Where]) -> Where:
    merged: Where = {}
    rest: list[Where] = []
    for part in parts:
        if any(key in merged for key in part):
            rest.append(part)
        else:
            merged.update(part)
    if not rest:
        return merged
    if "all" in merged:
        return {"all": [merged, *rest]}
    merged["all"] = rest
    return merged


def _or(parts: list[Where]) -> Where:
    keys = {next(iter(part)) for part in parts if len(part) == 1}
    if len(keys) == 1 and all(len(part) == 1 for part in parts):
        path = keys.pop()
        if path not in _COMBINATORS:
            return {path: _fold([part[path] for part in parts])}
    return {"any": parts}


def _fold(specs: list[dict[str, Any]]) -> dict[str, Any]:
    """OR-ed specs of one field, as one operator where they are all of one kind."""
    if all(spec.keys() in ({"equals"}, {"in"}) for spec in specs):
        values: list[Any] = []
        for spec in specs:
            values.extend(spec["in"] if "in" in spec else [spec["equals"]])
        return {"in": values}
    for op in ("contains", "startswith", "endswith"):
        for flags in ({op}, {op, "ignore_case"}):
            if all(spec.keys() == flags for spec in specs):
                texts: list[str] = []
                for spec in specs:
                    texts.extend(spec[op] if isinstance(spec[op], list) else [spec[op]])
                return {**specs[0], op: texts}
    if all(spec.keys() == {"regex"} for spec in specs):
        patterns: list[str] = []
        for spec in specs:
            value = spec["regex"]
            patterns.extend(value if isinstance(value, list) else [value])
        return {"regex": patterns}
    return {"any": specs}
