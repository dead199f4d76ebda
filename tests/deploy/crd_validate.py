"""Validate custom resources against their schemas; run with the tools venv's Python, which has jsonschema.
Usage: python crd_validate.py [--crd CRD.yaml]... SCHEMA_DIR FILE.yaml...

Schemas in SCHEMA_DIR are JSON Schemas named `<kind>-<group prefix>-<version>.json`
(ipaddresspool-metallb-v1beta1.json), for the custom resources of others (MetalLB). A `--crd` file is one
of our CustomResourceDefinitions: its objects are checked against the OpenAPI schema of the CRD itself,
read as the API server reads it — `nullable`, `x-kubernetes-int-or-string` and
`x-kubernetes-preserve-unknown-fields` — and with unknown fields refused, as `kubectl apply` (strict field
validation, its default) refuses them; their names must be DNS-1123 subdomains. Objects of other API
groups are ignored; an object of a covered group without a schema is an error. `kind: List` documents (as
`kubectl get -o yaml` prints them) are checked item by item.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped, import-not-found, unused-ignore]  # tools venv only
import yaml

COVERED_GROUPS = ("metallb.io", "monitoring.coreos.com")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def json_schema(node: Any) -> Any:
    """An OpenAPI v3 schema of a CRD as the JSON Schema the API server effectively applies."""
    if isinstance(node, list):
        return [json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: json_schema(value) for key, value in node.items() if not key.startswith("x-kubernetes-")}
    out.pop("nullable", None)
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("type") == "object" and "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False  # strict field validation: an unknown field is an error
    return out


def crd_schemas(paths: list[Path]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(group, version, kind) -> JSON Schema, for every served version of the CRDs in `paths`."""
    schemas = {}
    for path in paths:
        for crd in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                schema = json_schema(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
                # metadata is the API server's to check; its name is checked below.
                schema["properties"]["metadata"] = {"type": "object"}
                schemas[(spec["group"], version["name"], spec["names"]["kind"])] = schema
    return schemas


def objects(path: Path) -> Iterator[dict[str, Any]]:
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if isinstance(doc, dict) and doc.get("kind") == "List":
            yield from (item for item in doc.get("items") or [] if isinstance(item, dict))
        elif isinstance(doc, dict):
            yield doc


def main(argv: list[str]) -> int:
    crds: list[Path] = []
    while len(argv) >= 2 and argv[0] == "--crd":
        crds.append(Path(argv[1]))
        argv = argv[2:]
    schema_dir, files = Path(argv[0]), [Path(a) for a in argv[1:]]
    ours = crd_schemas(crds)
    groups = COVERED_GROUPS + tuple(group for group, _, _ in ours)
    failures = 0
    for path in files:
        for doc in objects(path):
            if "/" not in doc.get("apiVersion", ""):
                continue
            group, version = doc["apiVersion"].split("/", 1)
            if group not in groups:
                continue
            name = doc.get("metadata", {}).get("name")
            label = f"{doc.get('kind')}/{name}"
            if (group, version, doc.get("kind")) in ours:
                schema = ours[(group, version, doc["kind"])]
                if not isinstance(name, str) or len(name) > 253 or not DNS_SUBDOMAIN.match(name):
                    print(f"ERROR {label}: metadata/name: not a DNS-1123 subdomain")
                    failures += 1
            else:
                schema_file = schema_dir / f"{str(doc.get('kind')).lower()}-{group.split('.')[0]}-{version}.json"
                if not schema_file.exists():
                    print(f"ERROR {label}: no schema {schema_file.name}")
                    failures += 1
                    continue
                schema = json.loads(schema_file.read_text(encoding="utf-8"))
            errors = list(jsonschema.Draft202012Validator(schema).iter_errors(doc))
            for error in errors:
                print(f"ERROR {label}: {'/'.join(map(str, error.absolute_path))}: {error.message}")
            failures += len(errors)
            if not errors:
                print(f"validated {label}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
