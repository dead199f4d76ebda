from __future__ import annotations

from pathlib import Path

from auditflow.api.openapi import DOCS_PATH, build_spec, render


def test_committed_openapi_spec_is_current() -> None:
    assert DOCS_PATH.read_bytes() == render(build_spec()), (
        "docs/api/openapi.json is stale: run `python -m auditflow.api.openapi`"
    )


def test_every_api_operation_declares_bearer_auth_and_a_response_model() -> None:
    spec = build_spec()
    unauthenticated = {"/healthz", "/readyz", "/metrics"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if path in unauthenticated:
                assert "security" not in operation, path
                continue
            assert operation.get("security") == [{"HTTPBearer": []}], (method, path)
            success = next(code for code in operation["responses"] if code.startswith("2"))
            assert "content" in operation["responses"][success] or method == "delete", (method, path)


def test_export_writes_the_spec(tmp_path: Path) -> None:
    from auditflow.api.openapi import main

    target = tmp_path / "api" / "openapi.json"
    assert main([str(target)]) == 0
    assert target.read_bytes() == render(build_spec())
