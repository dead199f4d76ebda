"""JSON Schema export of the message contracts and of rule files; the committed files are what
producers, consumers and rule authors' editors are checked against (`python -m auditflow.model.schema`
rewrites them)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from auditflow.model.alert import Alert
from auditflow.model.event import Event

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "schemas"


def contract_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, for every message contract and the rule file format."""
    from auditflow.rules.schema import RuleFile  # the rules import the event model

    return {
        "event.schema.json": Event.model_json_schema(mode="validation"),
        "alert.schema.json": Alert.model_json_schema(mode="serialization"),
        "rules.schema.json": RuleFile.model_json_schema(mode="validation"),
    }


def render(schema: dict[str, Any]) -> bytes:
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def main(argv: list[str] | None = None) -> int:
    """`python -m auditflow.model.schema [DIR]`: write the contract schemas into DIR (default: schemas/)."""
    if argv and (argv[0].startswith("-") or len(argv) > 1):
        usage = "usage: python -m auditflow.model.schema [DIR]  (writes the JSON schemas; default schemas/)"
        print(usage, file=sys.stderr)
        return 0 if argv[0] in {"-h", "--help"} else 2
    target = Path(argv[0]) if argv else SCHEMA_DIR
    target.mkdir(parents=True, exist_ok=True)
    for name, schema in contract_schemas().items():
        (target / name).write_bytes(render(schema))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
