"""One parsed Sigma rule (pySigma's `SigmaRule`) as an AuditFlow match rule.

The rule keeps Sigma's id (as `sigma-<id>`), title, description and ATT&CK tags; its level becomes
the severity and is kept as a `sigma.level.*` tag. Sigma's references, false positives, id, title,
level and status become the rule's `references`, `falsepositives` and `origin`. The converted
rule is validated with the rule schema here, so anything the engine would refuse (an over-long or
dangerous regex) is reported as unsupported with the schema's message rather than written out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sigma.rule import SigmaRule, SigmaRuleBase

from auditflow.model.rule_metadata import (
    MAX_FALSEPOSITIVE_LENGTH,
    MAX_FALSEPOSITIVES,
    MAX_REFERENCES,
    MAX_URL_LENGTH,
    is_http_url,
)
from auditflow.rules.schema import Rule
from auditflow.rules.sigma.condition import Where, to_where
from auditflow.rules.sigma.errors import UnsupportedRule
from auditflow.rules.sigma.logsources import LogSource, resolve

SEVERITY = {
    "informational": "INFO",
    "low": "INFO",
    "medium": "WARNING",
    "high": "ERROR",
    "critical": "CRITICAL",
}
MAX_DESCRIPTION = 1900  # the schema allows 2000; braces are doubled when escaped
_RULE = TypeAdapter(Rule)
_NOT_ID = re.compile(r"[^a-z0-9_.-]+")


@dataclass
class ConvertedRule:
    """An AuditFlow rule made from a Sigma rule; `notes` name Sigma metadata that did not fit the rule."""

    rule: dict[str, Any]
    sigma_id: str | None
    title: str
    notes: list[str] = field(default_factory=list)


def rule_metadata(sigma: SigmaRuleBase) -> tuple[dict[str, Any], list[str]]:
    """The rule keys `references`, `falsepositives` and `origin` for a Sigma rule, and notes on what
    was left out (a reference that is not an http(s) URL cannot be a link, so it is not one)."""
    notes: list[str] = []
    references: list[str] = []
    for reference in (str(r).strip() for r in sigma.references):
        shown = " ".join(reference.split())[:120]
        if not is_http_url(reference):
            notes.append(f"reference left out, not an http(s) URL: {shown}")
        elif len(reference) > MAX_URL_LENGTH:
            notes.append(f"reference left out, longer than {MAX_URL_LENGTH} characters: {shown}")
        elif reference not in references:
            references.append(reference)
    if len(references) > MAX_REFERENCES:
        notes.append(f"{len(references) - MAX_REFERENCES} references left out (at most {MAX_REFERENCES} are kept)")
    falsepositives = [text for text in (" ".join(str(f).split()) for f in sigma.falsepositives) if text]
    if any(len(text) > MAX_FALSEPOSITIVE_LENGTH for text in falsepositives):
        notes.append(f"false positives longer than {MAX_FALSEPOSITIVE_LENGTH} characters shortened")
        falsepositives = [text[:MAX_FALSEPOSITIVE_LENGTH] for text in falsepositives]
    if len(falsepositives) > MAX_FALSEPOSITIVES:
        notes.append(f"{len(falsepositives) - MAX_FALSEPOSITIVES} false positives left out")
    origin: dict[str, Any] = {"kind": "sigma"}
    if sigma.id is not None:
        origin["id"] = str(sigma.id)
    if sigma.title:
        origin["title"] = sigma.title[:300]
    if sigma.level is not None:
        origin["level"] = sigma.level.name.lower()
    if sigma.status is not None:
        origin["status"] = sigma.status.name.lower()
    keys: dict[str, Any] = {"origin": origin}
    if references:
        keys["references"] = references[:MAX_REFERENCES]
    if falsepositives:
        keys["falsepositives"] = falsepositives[:MAX_FALSEPOSITIVES]
    return keys, notes


def rule_id(sigma: SigmaRuleBase) -> str:
    if sigma.id is not None:
        return f"sigma-{sigma.id}"
    slug = _NOT_ID.sub("-", (sigma.name or sigma.title).lower()).strip("-")
    return f"sigma-{slug}"[:128]


def rule_tags(sigma: SigmaRuleBase) -> list[str]:
    tags = ["sigma", *(str(tag) for tag in sigma.tags)]
    if sigma.level is not None:
        tags.append(f"sigma.level.{sigma.level.name.lower()}")
    return tags


def severity(sigma: SigmaRuleBase) -> str:
    return SEVERITY.get(sigma.level.name.lower(), "WARNING") if sigma.level is not None else "WARNING"


def escape_template(text: str) -> str:
    """Sigma descriptions are plain text; ours are templates, so braces are doubled."""
    return text[:MAX_DESCRIPTION].replace("{", "{{").replace("}", "}}")


def detection_where(sigma: SigmaRule) -> tuple[Where, LogSource]:
    """The rule's detection, pinned to its logsource's events, as a `where:` mapping."""
    source = resolve(sigma.logsource.product, sigma.logsource.category, sigma.logsource.service)
    conditions = sigma.detection.parsed_condition
    if len(conditions) != 1:
        raise UnsupportedRule(f"{len(conditions)} conditions in one rule (only one is supported)")
    # A SigmaError here (an undefined identifier) means the rule is broken; the importer says so.
    detection = to_where(conditions[0].parsed, source)
    where = dict(source.where)
    if any(key in where for key in detection):
        where["all"] = [detection]
    else:
        where.update(detection)
    return where, source


def convert_rule(sigma: SigmaRule) -> ConvertedRule:
    """Convert a Sigma detection rule, or raise UnsupportedRule with the reason."""
    where, _ = detection_where(sigma)
    rule: dict[str, Any] = {
        "id": rule_id(sigma),
        "name": sigma.title[:200],
        "kind": "match",
        "severity": severity(sigma),
        "where": where,
        "tags": rule_tags(sigma),
        "group_by": ["server_hostname"],
    }
    if sigma.description:
        rule["description"] = escape_template(sigma.description.strip())
    metadata, notes = rule_metadata(sigma)
    rule.update(metadata)
    return ConvertedRule(
        rule=validate(rule), sigma_id=str(sigma.id) if sigma.id else None, title=sigma.title, notes=notes
    )


def validate(rule: dict[str, Any]) -> dict[str, Any]:
    """Check the rule as the loader would; the schema's complaint becomes the unsupported reason."""
    try:
        _RULE.validate_python(rule)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        raise UnsupportedRule(f"AuditFlow rule check failed at {location}: {first['msg']}") from None
    return rule
