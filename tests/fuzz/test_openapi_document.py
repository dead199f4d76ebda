"""The published OpenAPI document is valid and every reference in it resolves, in every process
shape that publishes one, so generated clients and fuzzers see the real request bodies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from auditflow.app import create_app
from auditflow.config import load_settings
from auditflow.roles import ServiceName
from auditflow.runtime import Runtime


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs(value)]
    return []


@pytest.mark.parametrize("mode", ["run", "generator", "notification"])
def test_document_validates_and_every_reference_resolves(tmp_path: Path, mode: ServiceName) -> None:
    runtime = Runtime(load_settings(data_dir=tmp_path), mode)
    spec = create_app(runtime, [], manage_lifecycle=False).openapi()
    validate(spec)  # raises on an invalid document or an unresolvable reference
    schemas = spec["components"]["schemas"]
    for ref in refs(spec):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_events_request_body_refers_to_the_event_schema(tmp_path: Path) -> None:
    runtime = Runtime(load_settings(data_dir=tmp_path), "run")
    spec = create_app(runtime, [], manage_lifecycle=False).openapi()
    body = spec["paths"]["/api/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["oneOf"][0] == {"$ref": "#/components/schemas/Event"}
    assert spec["components"]["schemas"]["Event"]["title"] == "AuditEvent"
