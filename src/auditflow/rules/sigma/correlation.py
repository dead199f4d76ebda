"""Sigma correlation rules as AuditFlow threshold and sequence rules.

`event_count` becomes a threshold, `value_count` a distinct-count threshold, `temporal_ordered` a
sequence and `temporal` an unordered sequence (`ordered: false`), over the `where:` of the rules
they reference, with Sigma's `timespan` as the window and its `group-by` mapped through the
referenced rules' logsource. Field `aliases` (a group-by name that stands for a different field in
each referenced rule) become the sequence steps' own `group_by`.
"""

from __future__ import annotations

from typing import Any

from sigma.correlations import (
    CorrelationConditionAND,
    CorrelationConditionItem,
    SigmaCorrelationConditionOperator,
    SigmaCorrelationRule,
    SigmaCorrelationType,
    SigmaExtendedCorrelationCondition,
    SigmaRuleReference,
)
from sigma.rule import SigmaRule

from auditflow.rules.sigma.convert import (
    ConvertedRule,
    detection_where,
    escape_template,
    rule_id,
    rule_metadata,
    rule_tags,
    severity,
    validate,
)
from auditflow.rules.sigma.errors import UnsupportedRule
from auditflow.rules.sigma.logsources import LogSource

_THRESHOLDS = (SigmaCorrelationType.EVENT_COUNT, SigmaCorrelationType.VALUE_COUNT)
_SEQUENCES = (SigmaCorrelationType.TEMPORAL, SigmaCorrelationType.TEMPORAL_ORDERED)


def _references(correlation: SigmaCorrelationRule) -> list[SigmaRuleReference]:
    """The referenced rules: the `rules:` list, or those an extended condition names."""
    if correlation.rules is not None:
        return list(correlation.rules)
    return list(getattr(correlation, "referenced_rules", None) or [])


def _base_rules(references: list[SigmaRuleReference]) -> list[SigmaRule]:
    rules: list[SigmaRule] = []
    for reference in references:
        rule = reference.rule
        if not isinstance(rule, SigmaRule):
            raise UnsupportedRule(f"correlation of correlation {reference.reference!r} is not supported")
        rules.append(rule)
    if not rules:
        raise UnsupportedRule("the correlation references no rule")
    return rules


def _map_field(name: str, sources: list[LogSource], what: str) -> str:
    paths = {source.targets(name) for source in sources}
    if len(paths) != 1:
        raise UnsupportedRule(f"{what} field {name!r} maps to different event fields in the referenced rules")
    targets = paths.pop()
    if len(targets) != 1:
        raise UnsupportedRule(f"{what} field {name!r} may be found in several event fields ({', '.join(targets)})")
    return targets[0]


def _group_fields(
    correlation: SigmaCorrelationRule, references: list[SigmaRuleReference], rules: list[SigmaRule],
    sources: list[LogSource],
) -> list[list[str]]:  # fmt: skip
    """For each referenced rule, the event fields of the correlation's group-by in its events: a
    group-by name that is an alias stands for the field the alias names for that rule."""
    aliases = {alias.alias: alias for alias in correlation.aliases}
    unused = sorted(set(aliases) - set(correlation.group_by or []))
    if unused:
        raise UnsupportedRule(f"alias {unused[0]!r} is not in the correlation's group-by")
    fields: list[list[str]] = []
    for reference, rule, source in zip(references, rules, sources, strict=True):
        names = {reference.reference, rule.name, str(rule.id) if rule.id else None} - {None}
        mapped: list[str] = []
        for name in correlation.group_by or []:
            alias = aliases.get(name)
            if alias is None:
                mapped.append(_map_field(name, [source], "group-by"))
                continue
            own = [field for ref, field in alias.mapping.items() if ref.reference in names]
            if not own:
                raise UnsupportedRule(f"alias {name!r} names no field for the referenced rule {reference.reference!r}")
            mapped.append(_map_field(own[0], [source], f"alias {name!r}"))
        fields.append(mapped)
    return fields


def _at_least(correlation: SigmaCorrelationRule) -> int:
    condition = correlation.condition
    if isinstance(condition, SigmaExtendedCorrelationCondition):
        raise UnsupportedRule(f"extended correlation condition {condition.expression!r} is not supported")
    op = getattr(condition, "op", None)
    count = getattr(condition, "count", None)
    if not isinstance(count, int):
        raise UnsupportedRule("the correlation condition needs an integer count")
    if op is SigmaCorrelationConditionOperator.GTE:
        return count
    if op is SigmaCorrelationConditionOperator.GT:
        return count + 1
    raise UnsupportedRule(f"correlation condition {op.name.lower() if op else None}: only gte and gt are supported")


def _conjunction(item: CorrelationConditionItem | SigmaRuleReference) -> bool:
    if isinstance(item, SigmaRuleReference):
        return True
    return isinstance(item, CorrelationConditionAND) and all(_conjunction(arg) for arg in item.args)


def _require_all(correlation: SigmaCorrelationRule, rules: int) -> None:
    """A temporal correlation converts when every referenced rule must occur."""
    name = correlation.type.name.lower()
    if rules < 2:
        raise UnsupportedRule(f"{name} needs at least two rules")
    condition = correlation.condition
    if isinstance(condition, SigmaExtendedCorrelationCondition):
        # pySigma checks that the expression names every referenced rule.
        if not _conjunction(condition.parsed):
            raise UnsupportedRule(
                f"{name} condition {condition.expression!r}: only all referenced rules joined by 'and' is supported"
            )
        return
    at_least = _at_least(correlation)
    if at_least != rules:
        raise UnsupportedRule(
            f"{name} is supported when all referenced rules must occur (gte: {rules}), not at least {at_least} of them"
        )


def convert_correlation(correlation: SigmaCorrelationRule) -> ConvertedRule:
    """Convert a correlation rule whose references are resolved, or raise UnsupportedRule."""
    kind = correlation.type
    if kind not in (*_THRESHOLDS, *_SEQUENCES):
        raise UnsupportedRule(f"correlation type {kind.name.lower()} is not supported")
    references = _references(correlation)
    bases = _base_rules(references)
    parts = [detection_where(base) for base in bases]
    sources = [source for _, source in parts]
    fields = _group_fields(correlation, references, bases, sources)
    rule: dict[str, Any] = {
        "id": rule_id(correlation),
        "name": correlation.title[:200],
        "severity": severity(correlation),
        "tags": rule_tags(correlation),
        "group_by": fields[0],
        "window": f"{correlation.timespan.seconds}s",
    }
    if correlation.description:
        rule["description"] = escape_template(correlation.description.strip())
    if kind in _THRESHOLDS:
        for name, *paths in zip(correlation.group_by or [], *fields, strict=True):
            if len(set(paths)) != 1:
                what = "alias" if any(alias.alias == name for alias in correlation.aliases) else "group-by field"
                raise UnsupportedRule(
                    f"{what} {name!r} maps to different event fields in the referenced rules, "
                    f"which {kind.name.lower()} cannot group by: it counts their events together"
                )
        wheres = [where for where, _ in parts]
        rule["kind"] = "threshold"
        rule["where"] = wheres[0] if len(wheres) == 1 else {"any": wheres}
        rule["count"] = _at_least(correlation)
        if kind is SigmaCorrelationType.VALUE_COUNT:
            fieldref = getattr(correlation.condition, "fieldref", None)
            if not isinstance(fieldref, str):
                raise UnsupportedRule("value_count needs exactly one condition field")
            rule["distinct"] = _map_field(fieldref, sources, "value_count")
    else:
        _require_all(correlation, len(parts))
        rule["kind"] = "sequence"
        if kind is SigmaCorrelationType.TEMPORAL:
            rule["ordered"] = False
        rule["steps"] = [
            {"where": where} if own == fields[0] else {"where": where, "group_by": own}
            for (where, _), own in zip(parts, fields, strict=True)
        ]
    metadata, notes = rule_metadata(correlation)
    rule.update(metadata)
    return ConvertedRule(
        rule=validate(rule),
        sigma_id=str(correlation.id) if correlation.id else None,
        title=correlation.title,
        notes=notes,
    )
