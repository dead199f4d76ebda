"""Detection rules: the YAML schema, loading with hot reload, and the engine that applies them."""

from __future__ import annotations

from auditflow.rules.engine import Detector
from auditflow.rules.loader import DEFAULT_RULES_DIR, check_files, load_rules
from auditflow.rules.ruleset import RuleSet
from auditflow.rules.schema import MatchRule, Rule, SequenceRule, ThresholdRule
from auditflow.rules.watcher import RuleWatcher

__all__ = [
    "DEFAULT_RULES_DIR",
    "Detector",
    "MatchRule",
    "Rule",
    "RuleSet",
    "RuleWatcher",
    "SequenceRule",
    "ThresholdRule",
    "check_files",
    "load_rules",
]
