"""Validate custom resources against the JSON schemas in a directory; run with the tools venv's Python,
which has jsonschema. Usage: python crd_validate.py SCHEMA_DIR FILE.yaml...

Schemas are named `<kind>-<group prefix>-<version>.json` (ipaddresspool-metallb-v1beta1.json). Objects
of other API groups are ignored; an object of a covered group without a schema is an error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema  # type: ignore[import-untyped, import-not-found, unused-ignore]  # tools venv only
import yaml

COVERED_GROUPS = ("metallb.io", "monitoring.coreos.com")


def main(argv: list[str]) -> int:
    schema_dir, files = Path(argv[0]), [Path(a) for a in argv[1:]]
    failures = 0
    for path in files:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not doc or "/" not in doc.get("apiVersion", ""):
                continue
            group, version = doc["apiVersion"].split("/", 1)
            if group not in COVERED_GROUPS:
                continue
            label = f"{doc['kind']}/{doc.get('metadata', {}).get('name')}"
            schema_file = schema_dir / f"{doc['kind'].lower()}-{group.split('.')[0]}-{version}.json"
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
