"""Read Sigma files and directories, convert every rule, and account for each one in a report.

Every rule of every file ends up in the report: converted, used only by a correlation,
unsupported (a valid Sigma rule AuditFlow cannot evaluate, with the reason) or broken (not valid
Sigma, with pySigma's error). Nothing is dropped silently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError
from sigma.processing.pipeline import ProcessingPipeline
from sigma.rule import SigmaRule, SigmaRuleBase

from auditflow.rules.sigma.convert import ConvertedRule, convert_rule
from auditflow.rules.sigma.correlation import convert_correlation
from auditflow.rules.sigma.errors import UnsupportedRule
from auditflow.rules.sigma.pipelines import PipelineError, chain, file_directive, load

Status = Literal["converted", "referenced", "unsupported", "broken"]
SIGMA_SUFFIXES = (".yml", ".yaml")


@dataclass
class Outcome:
    """What became of one Sigma rule (or of a file that holds no readable rule)."""

    path: Path
    title: str
    status: Status
    reason: str = ""
    converted: ConvertedRule | None = None
    sigma_id: str | None = None


@dataclass
class ImportReport:
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status == status)

    @property
    def rules(self) -> list[ConvertedRule]:
        return [o.converted for o in self.outcomes if o.converted is not None]

    def top_reasons(self, limit: int = 10) -> list[tuple[str, int]]:
        reasons = Counter(o.reason for o in self.outcomes if o.status in ("unsupported", "broken"))
        return reasons.most_common(limit)


def find_sigma_files(paths: Iterable[Path]) -> list[Path]:
    """The files named, and every `*.yml`/`*.yaml` below the directories named, in name order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix in SIGMA_SUFFIXES and p.is_file() and not p.name.startswith(".")
                )
            )
        else:
            found.append(path)
    return found


def _title(rule: SigmaRuleBase) -> str:
    return rule.title or str(rule.id or "(untitled)")


def _yaml_error(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return f"invalid YAML: {' '.join(str(exc).split())}"


def _read(path: Path, report: ImportReport) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        report.outcomes.append(Outcome(path, "-", "broken", f"cannot read: {exc}"))
        return None


def _parse(path: Path, text: str, report: ImportReport) -> list[SigmaRule | SigmaCorrelationRule]:
    try:
        collection = SigmaCollection.from_yaml(text, collect_errors=True, resolve_references=False)
    except yaml.YAMLError as exc:
        report.outcomes.append(Outcome(path, "-", "broken", _yaml_error(exc)))
        return []
    except (SigmaError, TypeError, ValueError, AttributeError) as exc:
        report.outcomes.append(Outcome(path, "-", "broken", f"not a Sigma rule: {exc}"))
        return []
    valid: list[SigmaRule | SigmaCorrelationRule] = []
    for rule in collection.rules:
        if rule.errors:
            report.outcomes.append(Outcome(path, _title(rule), "broken", str(rule.errors[0])))
        else:
            valid.append(rule)
    if not collection.rules:
        report.outcomes.append(Outcome(path, "-", "broken", "no Sigma rule in the file"))
    return valid


def import_sigma(paths: Sequence[Path], pipelines: Sequence[ProcessingPipeline] = ()) -> ImportReport:
    """Convert every Sigma rule found under `paths`; correlations may reference rules of other files."""
    report = ImportReport()
    texts: list[tuple[Path, str]] = []
    for path in find_sigma_files(paths):
        text = _read(path, report)
        if text is not None:
            texts.append((path, text))
    return convert_texts(texts, report, pipelines)


def convert_texts(
    texts: Sequence[tuple[Path, str]],
    report: ImportReport | None = None,
    pipelines: Sequence[ProcessingPipeline] = (),
) -> ImportReport:
    """Convert Sigma files already read, as (path, text); correlations may reference rules of any of them.

    `pipelines` (pySigma processing pipelines) are applied to every rule, with those a file names
    in its `auditflow-sigma-pipeline` comment, before AuditFlow's own mapping."""
    report = report if report is not None else ImportReport()
    parsed: list[tuple[Path, SigmaRule | SigmaCorrelationRule]] = []
    for path, text in texts:
        rules = _parse(path, text, report)
        try:
            pipeline = chain([*pipelines, *load(file_directive(text), path.parent)]) if rules else None
        except PipelineError as exc:
            report.outcomes.append(Outcome(path, "-", "broken", str(exc)))
            continue
        for rule in rules:
            if pipeline is None or _apply(pipeline, path, rule, report):
                parsed.append((path, rule))
    collection = SigmaCollection([rule for _, rule in parsed], resolve_references=False)
    resolved: dict[int, str] = {}
    for _, rule in parsed:
        if isinstance(rule, SigmaCorrelationRule):
            try:
                rule.resolve_rule_references(collection)
            except SigmaError as exc:
                resolved[id(rule)] = f"correlation references a rule that is not here: {exc}"
    seen: set[str] = set()
    for path, rule in parsed:
        report.outcomes.append(_convert(path, rule, resolved.get(id(rule)), seen))
    return report


def _apply(
    pipeline: ProcessingPipeline, path: Path, rule: SigmaRule | SigmaCorrelationRule, report: ImportReport
) -> bool:
    """Apply the pipeline to a rule; a rule the pipeline refuses is reported as unsupported."""
    try:
        pipeline.apply(rule)
    except SigmaError as exc:
        reason = f"processing pipeline {pipeline.name or '(unnamed)'}: {exc}"
        sigma_id = str(rule.id) if rule.id is not None else None
        report.outcomes.append(Outcome(path, _title(rule), "unsupported", reason, sigma_id=sigma_id))
        return False
    return True


def _convert(path: Path, rule: SigmaRuleBase, unresolved: str | None, seen: set[str]) -> Outcome:
    title = _title(rule)
    sigma_id = str(rule.id) if rule.id is not None else None
    if unresolved is not None:
        return Outcome(path, title, "broken", unresolved, sigma_id=sigma_id)
    try:
        if isinstance(rule, SigmaCorrelationRule):
            converted = convert_correlation(rule)
        elif isinstance(rule, SigmaRule):
            converted = convert_rule(rule)
        else:
            return Outcome(path, title, "unsupported", f"{type(rule).__name__} is not supported", sigma_id=sigma_id)
    except UnsupportedRule as exc:
        return Outcome(path, title, "unsupported", str(exc), sigma_id=sigma_id)
    except SigmaError as exc:
        return Outcome(path, title, "broken", str(exc), sigma_id=sigma_id)
    rule_id = converted.rule["id"]
    if rule_id in seen:
        return Outcome(path, title, "broken", f"duplicate rule id {rule_id}", sigma_id=sigma_id)
    seen.add(rule_id)
    converted.rule["origin"]["file"] = path.name[:300]
    if not rule._output:
        # A correlation's base rule with `generate: false` only feeds the correlation.
        return Outcome(path, title, "referenced", "used by a correlation only", sigma_id=sigma_id)
    return Outcome(path, title, "converted", converted=converted, sigma_id=sigma_id)
