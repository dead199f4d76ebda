"""Write converted Sigma rules as AuditFlow rule files and render the import report as text."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import yaml

from auditflow.rules.sigma.convert import ConvertedRule
from auditflow.rules.sigma.importer import ImportReport, Status

_LABELS: dict[Status, str] = {
    "converted": "converted",
    "referenced": "referenced",
    "unsupported": "unsupported",
    "broken": "broken",
}


def render_rules(rules: list[ConvertedRule], source: str) -> str:
    """A rule file (a bare list); each rule's Sigma id, level, references and false positives are in
    its `origin`, `references` and `falsepositives` keys, so alerts and the rules page show them."""
    lines = [f"# AuditFlow rules converted from the Sigma file {source}", ""]
    for converted in rules:
        lines.append(yaml.safe_dump([converted.rule], sort_keys=False, allow_unicode=True, width=1000).rstrip())
        lines.append("")
    return "\n".join(lines)


def write_rules(report: ImportReport, out_dir: Path) -> list[Path]:
    """One `<name>.yaml` per Sigma file that gave rules; names made unique with a number if needed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    by_source: dict[Path, list[ConvertedRule]] = defaultdict(list)
    for outcome in report.outcomes:
        if outcome.converted is not None:
            by_source[outcome.path].append(outcome.converted)
    written: list[Path] = []
    used: set[str] = set()
    for source, rules in by_source.items():
        stem = source.name.removesuffix(source.suffix).removesuffix(".sigma")
        name, n = f"{stem}.yaml", 1
        while name in used:
            n += 1
            name = f"{stem}-{n}.yaml"
        used.add(name)
        target = out_dir / name
        target.write_text(render_rules(rules, source.name), encoding="utf-8")
        written.append(target)
    return written


def render_report(report: ImportReport) -> list[str]:
    """One line per rule, then a summary and the most frequent reasons for rules not converted."""
    lines = []
    for o in report.outcomes:
        detail = o.converted.rule["id"] if o.converted is not None else o.reason
        lines.append(f"{_LABELS[o.status]:<11} {o.path}: {o.title}: {detail}")
        if o.converted is not None:
            lines.extend(f"{'':<11} note: {note}" for note in o.converted.notes)
    total = len(report.outcomes)
    counts = ", ".join(f"{report.count(status)} {status}" for status in _LABELS)
    lines.append(f"{total} Sigma rules: {counts}")
    for reason, count in report.top_reasons():
        lines.append(f"  {count:>4} x {reason}")
    return lines
