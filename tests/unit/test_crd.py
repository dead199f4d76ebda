"""The AuditRule CRD generated from the rule schema: the committed manifest is current, its schema is
structural (as the API server demands), and every key of every rule kind is in it, each kind's keys
required or refused by its `oneOf` branch."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from auditflow.model.crd import CRD_FILE, CrdError, crd, render, rule_spec_schema, structural, structural_problems
from auditflow.rules.schema import RULE_KINDS


def test_the_committed_crd_is_current() -> None:
    assert CRD_FILE.read_text(encoding="utf-8") == render(), "run: python -m auditflow.model.crd"


def test_the_spec_schema_is_structural() -> None:
    spec = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert structural_problems(spec) == []
    assert "$ref" not in yaml.safe_dump(spec)
    assert "const" not in spec["properties"]["kind"]


def test_every_key_of_every_kind_is_in_the_spec_and_each_kind_refuses_the_others() -> None:
    spec = rule_spec_schema()
    branches = {branch["properties"]["kind"]["enum"][0]: branch for branch in spec["oneOf"]}
    assert set(branches) == set(RULE_KINDS)
    for kind, model in RULE_KINDS.items():
        keys = set(model.model_fields)
        assert keys <= set(spec["properties"]), kind
        refused = {name for option in branches[kind].get("not", {}).get("anyOf", []) for name in option["required"]}
        assert refused == set(spec["properties"]) - keys, kind
        required = {name for name, field in model.model_fields.items() if field.is_required()}
        assert required == set(spec["required"]) | set(branches[kind].get("required", [])), kind


def test_conditions_are_kept_whole_and_durations_are_int_or_string() -> None:
    properties = rule_spec_schema()["properties"]
    assert properties["where"]["x-kubernetes-preserve-unknown-fields"] is True
    assert properties["steps"]["items"]["properties"]["where"]["x-kubernetes-preserve-unknown-fields"] is True
    for name in ("window", "suppress_for"):
        assert properties[name]["x-kubernetes-int-or-string"] is True
        assert properties[name]["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert properties["distinct"] == {
        "type": "string",
        "description": properties["distinct"]["description"],
        "nullable": True,
    }
    assert properties["references"]["items"]["pattern"].startswith("^[Hh][Tt][Tt][Pp]")


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "object", "properties": {"a": {"$ref": "#/x", "type": "string"}}}, ".a: $ref"),
        ({"type": "object", "properties": {"a": {"description": "no type"}}}, ".a: no type"),
        ({"type": "object", "properties": {"a": {"type": "object"}}}, ".a: an object without properties"),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "oneOf": [{"properties": {"b": {}}}]},
            ".oneOf[0]: property b not specified outside the junctor",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "anyOf": [{"type": "object"}]},
            ".anyOf[0]: type inside a junctor",
        ),
        ({"x-kubernetes-int-or-string": True, "anyOf": [{"type": "boolean"}]}, ": int-or-string with an anyOf"),
    ],
)
def test_structural_problems_are_found(schema: dict[str, Any], problem: str) -> None:
    assert any(found.startswith(problem) or problem in found for found in structural_problems(schema)), (
        structural_problems(schema)
    )


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "array", "uniqueItems": True}, "spec: no structural form for uniqueItems"),
        ({"anyOf": [{"type": "string"}, {"type": "boolean"}]}, "spec: anyOf of 2 schemas has no structural form"),
        ({"description": "untyped"}, "spec: no type"),
    ],
)
def test_the_generator_refuses_what_it_cannot_express(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(CrdError, match=message):
        structural(schema)
