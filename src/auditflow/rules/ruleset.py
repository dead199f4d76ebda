"""A loaded, immutable set of rules with an index by event type for the analysis hot path."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from auditflow.model.status import RuleInfo
from auditflow.model.timeutil import utcnow
from auditflow.rules.schema import MatchRule, Rule


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Rules in file order. `version` is a hash of the files' names and contents."""

    rules: tuple[Rule, ...]
    version: str
    source: str
    loaded_at: datetime = field(default_factory=utcnow)
    by_id: Mapping[str, Rule] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)  # rule id -> file it came from
    warnings: tuple[str, ...] = ()  # rules of the files that were not loaded (unsupported Sigma), why
    # Enabled rules per pinned event type (each list also holds the rules that look at every type),
    # so most rules are never evaluated for most events.
    _by_event_type: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict, repr=False)
    _unpinned: tuple[Rule, ...] = field(default=(), repr=False)

    @classmethod
    def build(
        cls,
        rules: Iterable[Rule],
        *,
        version: str,
        source: str,
        sources: Mapping[str, str] | None = None,
        warnings: Iterable[str] = (),
    ) -> RuleSet:
        ordered = tuple(rules)
        enabled = [rule for rule in ordered if rule.enabled]
        event_types = {t for rule in enabled for t in (rule.event_types or ())}
        index = {
            t: tuple(rule for rule in enabled if rule.event_types is None or t in rule.event_types)
            for t in sorted(event_types)
        }
        return cls(
            rules=ordered,
            version=version,
            source=source,
            by_id=MappingProxyType({rule.id: rule for rule in ordered}),
            sources=MappingProxyType(dict(sources or {})),
            warnings=tuple(warnings),
            _by_event_type=MappingProxyType(index),
            _unpinned=tuple(rule for rule in enabled if rule.event_types is None),
        )

    @property
    def enabled(self) -> tuple[Rule, ...]:
        return tuple(rule for rule in self.rules if rule.enabled)

    @property
    def unpinned(self) -> tuple[Rule, ...]:
        """The enabled rules that look at events of every type."""
        return self._unpinned

    def for_event_type(self, event_type: str) -> tuple[Rule, ...]:
        """The enabled rules that can fire on an event of this type, in file order."""
        return self._by_event_type.get(event_type, self._unpinned)

    def infos(self) -> list[RuleInfo]:
        """Every rule (enabled or not) as the API lists it."""
        return [self._info(rule) for rule in self.rules]

    def info(self, rule_id: str) -> RuleInfo | None:
        """One rule as the API shows it, or None when no loaded rule has this id."""
        rule = self.by_id.get(rule_id)
        return self._info(rule) if rule is not None else None

    def _info(self, rule: Rule) -> RuleInfo:
        return RuleInfo(
            id=rule.id,
            name=rule.name,
            description=rule.description,
            kind=rule.kind,
            severity=rule.severity,
            tags=list(rule.tags),
            enabled=rule.enabled,
            suppress_for_seconds=rule.suppress_for.total_seconds(),
            window_seconds=None if isinstance(rule, MatchRule) else rule.window.total_seconds(),
            group_by=list(rule.group_by),
            source=self.sources.get(rule.id),
            references=list(rule.references),
            falsepositives=list(rule.falsepositives),
            origin=rule.origin,
        )

    def __len__(self) -> int:
        return len(self.rules)
