"""Sigma correlation rules as AuditFlow threshold and sequence rules.

`event_count` becomes a threshold, `value_count` a distinct-count threshold and
`temporal_ordered` a sequence, over the `where:` of the rules they reference, with Sigma's
`timespan` as the window and its `group-by` mapped through the referenced rules' logsource.
"""

from __future__ import annotations

from typing import Any

from sigma.correlations import SigmaCorrelationConditionOperator, SigmaCorrelationRule, SigmaCorrelationType
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


def _base_rules(correlation: SigmaCorrelationRule) -> list[SigmaRule]:
    rules: list[SigmaRule] = []
    for reference in correlation.rules or []:
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


def _at_least(correlation: SigmaCorrelationRule) -> int:
    condition = correlation.condition
    op = getattr(condition, "op", None)
    count = getattr(condition, "count", None)
    if not isinstance(count, int):
        raise UnsupportedRule("the correlation condition needs an integer count")
    if op is SigmaCorrelationConditionOperator.GTE:
        return count
    if op is SigmaCorrelationConditionOperator.GT:
        return count + 1
    raise UnsupportedRule(f"correlation condition {op.name.lower() if op else None}: only gte and gt are supported")


def convert_correlation(correlation: SigmaCorrelationRule) -> ConvertedRule:
    """Convert a correlation rule whose references are resolved, or raise UnsupportedRule."""
    if len(correlation.aliases):
        raise UnsupportedRule("correlation field aliases are not supported")
    bases = _base_rules(correlation)
    parts = [detection_where(base) for base in bases]
    sources = [source for _, source in parts]
    group_by = [_map_field(name, sources, "group-by") for name in correlation.group_by or []]
    rule: dict[str, Any] = {
        "id": rule_id(correlation),
        "name": correlation.title[:200],
        "severity": severity(correlation),
        "tags": rule_tags(correlation),
        "group_by": group_by,
        "window": f"{correlation.timespan.seconds}s",
    }
    if correlation.description:
        rule["description"] = escape_template(correlation.description.strip())
    kind = correlation.type
    if kind in _THRESHOLDS:
        wheres = [where for where, _ in parts]
        rule["kind"] = "threshold"
        rule["where"] = wheres[0] if len(wheres) == 1 else {"any": wheres}
        rule["count"] = _at_least(correlation)
        if kind is SigmaCorrelationType.VALUE_COUNT:
            fieldref = getattr(correlation.condition, "fieldref", None)
            if not isinstance(fieldref, str):
                raise UnsupportedRule("value_count needs exactly one condition field")
            rule["distinct"] = _map_field(fieldref, sources, "value_count")
    elif kind is SigmaCorrelationType.TEMPORAL_ORDERED:
        if len(parts) < 2:
            raise UnsupportedRule("temporal_ordered needs at least two rules")
        if _at_least(correlation) != len(parts):
            raise UnsupportedRule("temporal_ordered is supported when all referenced rules must occur")
        rule["kind"] = "sequence"
        rule["steps"] = [{"where": where} for where, _ in parts]
    else:
        raise UnsupportedRule(f"correlation type {kind.name.lower()} is not supported")
    metadata, notes = rule_metadata(correlation)
    rule.update(metadata)
    return ConvertedRule(
        rule=validate(rule),
        sigma_id=str(correlation.id) if correlation.id else None,
        title=correlation.title,
        notes=notes,
    )
