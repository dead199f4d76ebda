"""scripts/branch-protection against a fake GitHub (httpx.MockTransport): the requests it sends for the
settings in .github/branch-protection.yml, its dry run, its errors. No network."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml

from tests.deploy.conftest import REPO

SCRIPT = REPO / "scripts" / "branch-protection"
CONFIG = REPO / ".github" / "branch-protection.yml"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("branch_protection", str(SCRIPT))
    spec = importlib.util.spec_from_loader("branch_protection", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


class FakeGitHub:
    """Records each request; answers 200, or `failures[path]` as (status, message)."""

    def __init__(self, failures: dict[str, tuple[int, str]] | None = None) -> None:
        self.requests: list[tuple[str, str, dict[str, Any], str]] = []
        self.failures = failures or {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        self.requests.append((request.method, request.url.path, body, request.headers.get("authorization", "")))
        if request.url.path in self.failures:
            status, message = self.failures[request.url.path]
            return httpx.Response(status, json={"message": message})
        return httpx.Response(200, json={"url": str(request.url)})


def test_applies_every_branch_and_the_repository_settings(
    script: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "test-token-value")
    fake = FakeGitHub()
    status = script.main(["--repo", "example/auditflow"], transport=httpx.MockTransport(fake))
    assert status == 0
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    assert [(method, path) for method, path, _, _ in fake.requests] == [
        ("PATCH", "/repos/example/auditflow"),
        *[("PUT", f"/repos/example/auditflow/branches/{b}/protection") for b in config["branches"]],
    ]
    assert fake.requests[0][2] == {"allow_auto_merge": True, "delete_branch_on_merge": True}
    main = next(body for _, path, body, _ in fake.requests if path.endswith("/main/protection"))
    assert main == config["branches"]["main"]
    assert main["required_status_checks"]["contexts"]
    assert all(auth == "Bearer test-token-value" for *_, auth in fake.requests)
    output = capsys.readouterr()
    assert "test-token-value" not in output.out + output.err
    assert "PUT /repos/example/auditflow/branches/dev/protection: 200" in output.out


def test_reports_github_errors_and_exits_non_zero(
    script: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "test-token-value")
    fake = FakeGitHub({"/repos/example/auditflow/branches/main/protection": (403, "Resource not accessible")})
    assert script.main(["--repo", "example/auditflow"], transport=httpx.MockTransport(fake)) == 1
    assert len(fake.requests) == 3, "a failure does not stop the other branches"
    assert "403 Resource not accessible" in capsys.readouterr().out


def test_a_network_error_is_reported(
    script: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "test-token-value")

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    assert script.main(["--repo", "example/auditflow"], transport=httpx.MockTransport(refuse)) == 1
    assert "connection refused" in capsys.readouterr().err


def test_needs_a_token_unless_dry_run(
    script: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("GH_TOKEN", raising=False)
    fake = FakeGitHub()
    assert script.main(["--repo", "example/auditflow"], transport=httpx.MockTransport(fake)) == 2
    assert "GITHUB_TOKEN" in capsys.readouterr().err
    assert not fake.requests


def test_dry_run_prints_the_requests_and_sends_nothing() -> None:
    result = subprocess.run(
        [sys.executable, SCRIPT, "--repo", "example/auditflow", "--dry-run"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "GITHUB_API_URL": "http://127.0.0.1:9"},
    )
    assert result.returncode == 0, result.stderr
    assert "PUT http://127.0.0.1:9/repos/example/auditflow/branches/main/protection" in result.stdout
    assert '"allow_auto_merge": true' in result.stdout
    assert '"strict": true' in result.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("branches: {}\n", "`branches` must map at least one branch"),
        ("branches:\n  main:\n    enforce_admins: true\n", "branches.main.required_status_checks: required"),
        (
            "branches:\n  main:\n    required_status_checks: {strict: yes-please, contexts: []}\n"
            "    enforce_admins: true\n    required_pull_request_reviews: null\n    restrictions: null\n",
            "branches.main.required_status_checks: needs `strict`",
        ),
        (
            "repository: {allow_rebase: true}\nbranches:\n  main:\n    required_status_checks: null\n"
            "    enforce_admins: false\n    required_pull_request_reviews: null\n    restrictions: null\n",
            "repository.allow_rebase: unknown",
        ),
        ("branches: [main\n", "not valid YAML"),
    ],
)
def test_bad_settings_name_the_file_and_field(script: ModuleType, tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "protection.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(script.ConfigError) as error:
        script.load_config(path)
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_rejects_a_malformed_repository_name() -> None:
    result = subprocess.run(
        [sys.executable, SCRIPT, "--repo", "not a repo", "--dry-run"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "expected OWNER/NAME" in result.stderr
