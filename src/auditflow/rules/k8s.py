"""Rules as Kubernetes AuditRule objects: written by `auditflow rules export --k8s`, read back by the
loader (a file of AuditRule documents, or the `List` that `kubectl get auditrules -o yaml` prints).

An object's `spec` is the rule exactly as a rule file holds it, so exporting and loading again gives
the same rules. Its name is the rule id where the id is a valid Kubernetes name, otherwise the id
made valid plus a hash of the id, so the name stays the same from one export to the next.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from auditflow.model.crd import API_VERSION, GROUP, KIND
from auditflow.rules.schema import Rule

LIST_KINDS = ("List", f"{KIND}List")
MAX_NAME = 253
_NOT_NAME = re.compile(r"[^a-z0-9.-]+")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
RULE_ID_ANNOTATION = f"{GROUP}/rule-id"


def object_name(rule_id: str) -> str:
    """A DNS-1123 subdomain for the rule id: the id itself when it is one, else a cleaned id and a hash."""
    if len(rule_id) <= MAX_NAME and _DNS_SUBDOMAIN.match(rule_id):
        return rule_id
    labels = [label.strip("-") for label in _NOT_NAME.sub("-", rule_id.lower()).split(".")]
    cleaned = ".".join(label for label in labels if label)[:200].strip(".-") or "rule"
    digest = hashlib.sha256(rule_id.encode()).hexdigest()[:8]
    return f"{cleaned}-{digest}"


def rule_spec(rule: Rule) -> dict[str, Any]:
    """The rule as a rule file would hold it, without the keys left at their defaults (except `enabled`,
    which `kubectl get auditrules` shows as a column)."""
    dumped: dict[str, Any] = rule.model_dump(mode="json", exclude_defaults=True)
    spec = {key: dumped.pop(key) for key in ("id", "name", "kind", "severity")}
    spec.update(dumped)
    spec["enabled"] = rule.enabled
    return spec


def to_object(rule: Rule, namespace: str | None) -> dict[str, Any]:
    labels = {
        "app.kubernetes.io/name": "auditflow",
        "app.kubernetes.io/component": "rules",
        f"{GROUP}/kind": rule.kind,
        f"{GROUP}/severity": rule.severity.value.lower(),
    }
    if rule.origin is not None:
        labels[f"{GROUP}/origin"] = rule.origin.kind
        if rule.origin.level is not None:
            labels[f"{GROUP}/sigma-level"] = rule.origin.level
    metadata: dict[str, Any] = {"name": object_name(rule.id)}
    if namespace:
        metadata["namespace"] = namespace
    metadata["labels"] = labels
    metadata["annotations"] = {RULE_ID_ANNOTATION: rule.id}
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": rule_spec(rule)}


def is_k8s_document(document: Any) -> bool:
    """Whether a YAML document is a Kubernetes object (an AuditRule, a List, or some other kind)."""
    return isinstance(document, dict) and "apiVersion" in document and "kind" in document


@dataclass(frozen=True, slots=True)
class ObjectRule:
    """The spec of one AuditRule object, with how problems name the object."""

    label: str
    spec: Any


def object_rules(documents: Iterable[Any], problems: list[str], file: str) -> list[ObjectRule]:
    """The rule specs of the AuditRule objects among `documents` (Lists unpacked); anything else is a problem."""
    found: list[ObjectRule] = []
    for number, document in enumerate(documents, start=1):
        if document is None:
            continue
        if not is_k8s_document(document):
            problems.append(f"{file}: document {number}: not a Kubernetes object (apiVersion, kind) like the others")
            continue
        if document["kind"] in LIST_KINDS:
            items = document.get("items")
            if not isinstance(items, list):
                problems.append(f"{file}: document {number}: {document['kind']}: items: expected a list")
                continue
            for index, item in enumerate(items):
                _one(item, f"document {number}, item {index + 1}", problems, file, found)
        else:
            _one(document, f"document {number}", problems, file, found)
    return found


def _one(item: Any, where: str, problems: list[str], file: str, found: list[ObjectRule]) -> None:
    if not isinstance(item, dict):
        problems.append(f"{file}: {where}: expected a Kubernetes object, got {type(item).__name__}")
        return
    metadata = item.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    shown = f"{namespace}/{name}" if namespace else str(name)
    label = f"{item.get('kind')} '{shown}' ({where})"
    if item.get("kind") != KIND:
        problems.append(f"{file}: {label}: kind: expected {KIND}, the only kind a rule file may hold")
        return
    if item.get("apiVersion") != API_VERSION:
        problems.append(f"{file}: {label}: apiVersion: expected {API_VERSION}, got {item.get('apiVersion')!r}")
        return
    spec = item.get("spec")
    if not isinstance(spec, dict):
        problems.append(f"{file}: {label}: spec: expected the rule as a mapping")
        return
    found.append(ObjectRule(label, spec))
