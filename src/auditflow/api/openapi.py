"""Export of the OpenAPI document of the embedded process (a superset of every service's routes);
the committed copy under docs/api/ is checked by a test (`python -m auditflow.api.openapi` rewrites it)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

DOCS_PATH = Path(__file__).resolve().parents[3] / "docs" / "api" / "openapi.json"


def build_spec() -> dict[str, Any]:
    from auditflow.app import create_app
    from auditflow.config import load_settings
    from auditflow.runtime import Runtime

    with tempfile.TemporaryDirectory() as data_dir:
        runtime = Runtime(load_settings(data_dir=Path(data_dir)), "run")
        spec: dict[str, Any] = create_app(runtime, [], manage_lifecycle=False).openapi()
    return spec


def render(spec: dict[str, Any]) -> bytes:
    return orjson.dumps(spec, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def main(argv: list[str] | None = None) -> int:
    target = Path(argv[0]) if argv else DOCS_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(render(build_spec()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
