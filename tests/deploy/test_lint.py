"""The repository-hygiene checks of .pre-commit-config.yaml, run here so they cannot rot: yamllint on all
YAML, hadolint on the Dockerfile, checkov on the rendered manifests and the Dockerfile (zero failures, and
every inline skip still needed), and detect-secrets against the committed baseline."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import REPO, run, tool


def repo_files(*patterns: str, untracked: bool = True) -> list[str]:
    """Tracked files, and with `untracked` the new ones not ignored: what a fresh clone holds once committed."""
    extra = ["--others", "--exclude-standard"] if untracked else []
    listed = run(["git", "ls-files", "--cached", *extra, "--", *patterns]).stdout
    return [path for path in listed.splitlines() if (REPO / path).is_file()]


def test_yamllint_passes_on_every_yaml_file() -> None:
    yamllint = tool("yamllint")
    files = repo_files("*.yaml", "*.yml", ".yamllint.yml")
    assert "compose.yaml" in files
    assert ".pre-commit-config.yaml" in files
    result = run([yamllint, "--strict", "--config-file", ".yamllint.yml", *files], check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_passes_on_the_dockerfile() -> None:
    hadolint = tool("hadolint")
    result = run([hadolint, "--failure-threshold", "info", "Dockerfile"], check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_shape() -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    stages = re.findall(r"^FROM (\S+) AS (\w+)$", text, re.MULTILINE)
    assert [name for _, name in stages] == ["builder", "runtime"]
    # Both stages on one base, the official slim image unless BASE_IMAGE names a stand-in (the container tests).
    assert {image for image, _ in stages} == {"${BASE_IMAGE:-python:3.11-slim-bookworm}"}
    assert re.search(r"^ARG BASE_IMAGE$", text.split("FROM", 1)[0], re.MULTILINE)
    runtime = text.split("AS runtime", 1)[1]
    assert "pip wheel" not in runtime
    assert "apt-get" not in runtime
    assert re.search(r"^USER 10001:10001$", runtime, re.MULTILINE)
    assert re.search(r'^ENTRYPOINT \["auditflow"\]$', runtime, re.MULTILINE)
    assert re.search(r"^CMD \[", runtime, re.MULTILINE)
    assert "/healthz" in runtime.split("HEALTHCHECK", 1)[1].split("\n\n", 1)[0]


@pytest.fixture(scope="session")
def checkov_report(rendered_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One checkov run per session (it takes seconds): the manifests as rendered, the same manifests with
    the skip annotations removed (to prove each skip is still needed), and the Dockerfile."""
    checkov = tool("checkov")
    root = tmp_path_factory.mktemp("checkov")
    for name in ("rendered", "unskipped"):
        (root / name).mkdir()
    # prod-metallb holds every prod object plus the component's: scanning prod again would add nothing.
    for overlay in ("dev", "prod-metallb"):
        text = rendered_files[overlay].read_text(encoding="utf-8")
        (root / "rendered" / f"{overlay}.yaml").write_text(text, encoding="utf-8")
    stripped = "\n".join(line for line in text.splitlines() if "checkov.io/skip" not in line)
    (root / "unskipped" / "prod-metallb.yaml").write_text(stripped + "\n", encoding="utf-8")
    shutil.copy(REPO / "Dockerfile", root / "rendered" / "Dockerfile")
    result = subprocess.run(
        [
            checkov,
            "--directory",
            root,
            "--framework",
            "kubernetes",
            "dockerfile",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(root), "BC_SKIP_MAPPING": "TRUE"},
    )
    assert result.returncode in (0, 1), result.stderr
    reports = json.loads(result.stdout)
    merged: dict[str, Any] = {"failed": [], "skipped": [], "passed": 0}
    for report in reports if isinstance(reports, list) else [reports]:
        merged["failed"] += report["results"]["failed_checks"]
        merged["skipped"] += report["results"]["skipped_checks"]
        merged["passed"] += report["summary"]["passed"]
    return merged


def _findings(checks: list[dict[str, Any]], folder: str) -> set[tuple[str, str, str]]:
    return {
        (c["check_id"], Path(c["file_path"]).name, c["resource"]) for c in checks if f"/{folder}/" in c["file_path"]
    }


def test_checkov_finds_nothing(checkov_report: dict[str, Any]) -> None:
    failed = _findings(checkov_report["failed"], "rendered")
    assert not failed, sorted(failed)
    assert checkov_report["passed"] > 1000
    dockerfile = [
        c for c in checkov_report["skipped"] + checkov_report["failed"] if c["file_path"].endswith("Dockerfile")
    ]
    assert not dockerfile


def test_every_checkov_skip_is_justified_and_needed(checkov_report: dict[str, Any]) -> None:
    skipped = _findings(checkov_report["skipped"], "rendered")
    assert all(len(c["check_result"].get("suppress_comment", "")) > 30 for c in checkov_report["skipped"])
    # Without the annotations exactly the skipped checks fail: no skip hides more, none is stale.
    unskipped = _findings(checkov_report["failed"], "unskipped")
    assert unskipped == {f for f in skipped if f[1] == "prod-metallb.yaml"}
    assert {f[0] for f in skipped} == {f[0] for f in unskipped}


def test_detect_secrets_finds_nothing_new() -> None:
    """Every potential secret in the committed files is one audited as harmless in the baseline.

    Findings are compared by file and hashed value, not line number, so editing a file around an
    audited finding does not fail the suite; a new finding, or an unaudited one, does.
    """
    scanner = tool("detect-secrets")
    # Committed files only: work in progress is checked by the pre-commit hook when it is committed.
    files = [f for f in repo_files(untracked=False) if not f.startswith("tests/") and f != ".secrets.baseline"]
    found = json.loads(run([scanner, "scan", *files]).stdout)["results"]
    audited = json.loads((REPO / ".secrets.baseline").read_text(encoding="utf-8"))["results"]
    harmless = {
        (path, s["hashed_secret"]) for path, items in audited.items() for s in items if s.get("is_secret") is False
    }
    new = sorted(
        (path, s["line_number"], s["type"])
        for path, items in found.items()
        for s in items
        if (path, s["hashed_secret"]) not in harmless
    )
    assert not new, f"review these and audit them into .secrets.baseline (detect-secrets audit): {new}"


def test_detect_secrets_catches_a_planted_credential(tmp_path: Path) -> None:
    hook = tool("detect-secrets-hook")
    baseline = tmp_path / "baseline.json"
    shutil.copy(REPO / ".secrets.baseline", baseline)
    planted = tmp_path / "settings.env"
    planted.write_text("AUDITFLOW_DATABASE_URL=postgresql://auditflow:Zq8vN3kP2xLw9sTe@db:5432/auditflow\n")
    result = run([hook, "--baseline", baseline, planted], check=False)
    assert result.returncode == 1


def test_pre_commit_runs_the_checks_this_suite_runs() -> None:
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert set(hooks) == {"ruff", "ruff-format", "mypy", "yamllint", "hadolint", "manifests", "detect-secrets"}
    assert all(repo["repo"] == "local" for repo in config["repos"]), "hooks must work without network"
    entries = {hook_id: hook["entry"] for hook_id, hook in hooks.items()}
    assert entries["yamllint"].startswith(".venv-tools/bin/yamllint")
    assert entries["hadolint"].startswith(".venv-tools/bin/hadolint")
    assert entries["detect-secrets"].startswith(".venv-tools/bin/detect-secrets-hook --baseline .secrets.baseline")
    assert "tests/deploy" in entries["manifests"]
    validate = run([tool("pre-commit"), "validate-config", ".pre-commit-config.yaml"], check=False)
    assert validate.returncode == 0, validate.stdout + validate.stderr
