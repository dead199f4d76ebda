"""The AuditRule CustomResourceDefinition, generated from the rule schema so the two cannot drift
(`python -m auditflow.model.crd` rewrites the committed manifest; a test checks it is current).

An AuditRule's `spec` is one rule as a rule file holds it. Kubernetes wants a *structural* OpenAPI
v3 schema: no `$ref`, a `type` on every node, no `const`/`examples`/`discriminator`, nullability
as `nullable`, and logical junctors (`oneOf`, `not`) that only restrict fields specified outside
them. The rule kinds (a pydantic union discriminated by `kind`) are therefore merged into one
object with every key of every kind, and a `oneOf` names per kind the keys it needs and the keys
it may not have, so the API server refuses a threshold rule without `count` as the loader would.
Conditions (`where`) are free-form mappings compiled by the loader, kept whole with
`x-kubernetes-preserve-unknown-fields`; durations are `x-kubernetes-int-or-string`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from auditflow.model.schema import SCHEMA_DIR

GROUP = "auditflow.io"
VERSION = "v1alpha1"
KIND = "AuditRule"
PLURAL = "auditrules"
API_VERSION = f"{GROUP}/{VERSION}"
CRD_FILE = SCHEMA_DIR.parent / "deploy" / "k8s" / "components" / "auditrules" / "auditrule-crd.yaml"

# Keys a structural schema node may keep as they are; anything else is refused, so that a new kind
# of constraint in the rule schema is translated deliberately rather than dropped or passed through.
_KEPT = frozenset(
    {
        "type",
        "description",
        "properties",
        "items",
        "required",
        "enum",
        "pattern",
        "format",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
    }
)
_DROPPED = frozenset({"title", "default", "examples", "additionalProperties", "discriminator"})
_JUNCTOR_FORBIDDEN = frozenset({"type", "description", "default", "additionalProperties", "nullable"})


class CrdError(ValueError):
    """The rule schema holds something the generator cannot express as a structural schema."""


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            merged = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
            return _resolve(merged, defs)
        return {key: _resolve(value, defs) for key, value in node.items() if key != "$defs"}
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    return node


def _is_int_or_string(options: list[dict[str, Any]]) -> bool:
    return sorted(option.get("type", "") for option in options) == ["integer", "string"]


def structural(node: dict[str, Any], where: str = "spec") -> dict[str, Any]:
    """One resolved JSON Schema node as a structural OpenAPI v3 node."""
    node = {key: value for key, value in node.items() if key not in _DROPPED}
    if "const" in node:
        node["enum"] = [node.pop("const")]
    out: dict[str, Any] = {}
    if "anyOf" in node:
        options = node.pop("anyOf")
        non_null = [option for option in options if option.get("type") != "null"]
        if _is_int_or_string(non_null):
            # A duration: `5m` or a number of seconds.
            out["x-kubernetes-int-or-string"] = True
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        elif len(non_null) == 1:
            out.update(structural({**non_null[0], **node}, where))
            node = {}
        else:
            raise CrdError(f"{where}: anyOf of {len(non_null)} schemas has no structural form")
        if len(non_null) < len(options):
            out["nullable"] = True
    unknown = set(node) - _KEPT
    if unknown:
        raise CrdError(f"{where}: no structural form for {', '.join(sorted(unknown))}")
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: structural(child, f"{where}.{name}") for name, child in value.items()}
        elif key == "items":
            out[key] = structural(value, f"{where}[]")
        else:
            out[key] = value
    if out.get("type") == "object" and "properties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True  # a condition mapping, compiled by the loader
    if "type" not in out and not out.get("x-kubernetes-int-or-string"):
        raise CrdError(f"{where}: no type")
    return out


def rule_spec_schema() -> dict[str, Any]:
    """The structural schema of an AuditRule's spec: every rule kind merged, a oneOf per kind."""
    from pydantic import TypeAdapter

    from auditflow.rules.schema import Rule

    raw = TypeAdapter(Rule).json_schema(mode="validation")
    variants = _resolve(raw, raw.get("$defs", {}))["oneOf"]
    properties: dict[str, Any] = {}
    kinds: dict[str, tuple[set[str], set[str]]] = {}
    for variant in variants:
        kind = variant["properties"]["kind"]["const"]
        for name, schema in variant["properties"].items():
            if name == "kind":
                continue
            converted = structural(schema, f"spec.{name}")
            if name in properties and properties[name] != converted:
                raise CrdError(f"spec.{name}: differs between rule kinds, which one schema cannot say")
            properties[name] = converted
        kinds[kind] = (set(variant["properties"]), set(variant.get("required", [])))
    common = set.intersection(*(required for _, required in kinds.values()))
    one_of = []
    for kind, (allowed, required) in kinds.items():
        constraint: dict[str, Any] = {"properties": {"kind": {"enum": [kind]}}}
        if required - common:
            constraint["required"] = sorted(required - common)
        forbidden = sorted(set(properties) - allowed)
        if forbidden:
            constraint["not"] = {"anyOf": [{"required": [name]} for name in forbidden]}
        one_of.append(constraint)
    properties["kind"] = {"type": "string", "enum": list(kinds), "description": "match, threshold or sequence"}
    order = ["id", "name", "description", "severity", "kind"]
    ordered = {name: properties[name] for name in order} | {
        name: value for name, value in properties.items() if name not in order
    }
    return {
        "type": "object",
        "description": "One AuditFlow rule, with the keys of a rule in a rule file (docs/rules.md)",
        "required": [name for name in order if name in common],
        "properties": ordered,
        "oneOf": one_of,
    }


def structural_problems(node: dict[str, Any], where: str = "", in_junctor: bool = False) -> list[str]:
    """What keeps a schema from being structural, as the API server checks it (empty: none)."""
    problems: list[str] = []
    label = where or "."
    if "$ref" in node:
        problems.append(f"{label}: $ref")
    if in_junctor:
        problems += [f"{label}: {key} inside a junctor" for key in sorted(_JUNCTOR_FORBIDDEN & set(node))]
    elif "type" not in node and not node.get("x-kubernetes-int-or-string"):
        problems.append(f"{label}: no type")
    free_form = node.get("type") == "object" and "properties" not in node
    if free_form and not in_junctor and not node.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{label}: an object without properties would be pruned empty")
    for name, child in node.get("properties", {}).items():
        problems += structural_problems(child, f"{where}.{name}", in_junctor)
    if "items" in node:
        problems += structural_problems(node["items"], f"{where}[]", in_junctor)
    for junctor in ("oneOf", "anyOf", "allOf"):
        if junctor == "anyOf" and node.get("x-kubernetes-int-or-string"):
            # The one sanctioned use of types inside a junctor: `anyOf: [{type: integer}, {type: string}]`.
            if node["anyOf"] != [{"type": "integer"}, {"type": "string"}]:
                problems.append(f"{label}: int-or-string with an anyOf other than integer, string")
            continue
        for index, option in enumerate(node.get(junctor, [])):
            problems += structural_problems(option, f"{where}.{junctor}[{index}]", True)
            outside = set(node.get("properties", {}))
            problems += [
                f"{where}.{junctor}[{index}]: property {name} not specified outside the junctor"
                for name in sorted(set(option.get("properties", {})) - outside)
            ]
    if "not" in node:
        problems += structural_problems(node["not"], f"{where}.not", True)
    return problems


def crd() -> dict[str, Any]:
    spec = rule_spec_schema()
    problems = structural_problems(spec, "spec")
    if problems:
        raise CrdError("; ".join(problems))
    columns = [
        ("Rule", ".spec.name", "string", "The rule's name"),
        ("Kind", ".spec.kind", "string", "match, threshold or sequence"),
        ("Severity", ".spec.severity", "string", "INFO, WARNING, ERROR or CRITICAL"),
        ("Enabled", ".spec.enabled", "boolean", "false: loaded but never evaluated (empty: true)"),
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "auditflow", "app.kubernetes.io/component": "rules"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["afrule"],
                "categories": ["auditflow"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "additionalPrinterColumns": [
                        {"name": name, "type": kind, "jsonPath": path, "description": text}
                        for name, path, kind, text in columns
                    ]
                    + [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "An AuditFlow detection rule; spec is the rule as a rule file holds it.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                            },
                        }
                    },
                }
            ],
        },
    }


def render() -> str:
    header = (
        "# The AuditRule custom resource: one AuditFlow rule per object (docs/operations/kubernetes.md).\n"
        "# Generated from the rule schema by `python -m auditflow.model.crd`; do not edit.\n"
    )
    return header + yaml.safe_dump(crd(), sort_keys=False, width=120, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    target = Path(argv[0]) if argv else CRD_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
