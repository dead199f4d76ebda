"""The GitHub Actions workflows, checked here since no run on GitHub is possible from the suite: zizmor finds
nothing, every action is pinned by commit SHA with its release in a comment, permissions are least-privilege per
job under an empty top level, every workflow has a concurrency group, every script a workflow calls exists and is
executable, the CI matrix covers every test directory once, and branch protection requires only checks that exist
and always report."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import REPO, run, tool

WORKFLOWS = REPO / ".github" / "workflows"
WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml"))
PINNED_USE = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$")
SCRIPT_CALL = re.compile(r"(?:^|[\s;&|(])\.?/?(scripts/[\w.-]+|\.ci/[\w.-]+)")
WRITE_SCOPES_ALLOWED = {
    # workflow: {job: write scopes it may hold}
    "build.yml": {"image": {"packages"}},
    "release.yml": {
        "release-image": {"packages", "id-token", "attestations"},
        "release-wheel": {"id-token", "attestations"},
    },
    "security.yml": {
        "bandit": {"security-events"},
        "trivy-repo": {"security-events"},
        "trivy-image": {"security-events"},
    },
    "sast-issues.yml": {"issue": {"issues"}},
    "automerge.yml": {"enable": {"contents", "pull-requests"}},
}


def load(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    return data


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # PyYAML (YAML 1.1) reads the `on` key as True.
    on = workflow.get("on", workflow.get(True))
    assert isinstance(on, dict)
    return on


def test_the_workflows_exist() -> None:
    names = {path.name for path in WORKFLOW_FILES}
    assert {"ci.yml", "build.yml", "security.yml", "release.yml", "sast-issues.yml", "automerge.yml"} <= names


def test_zizmor_finds_nothing() -> None:
    zizmor = tool("zizmor")
    result = run([zizmor, "--offline", "--no-progress", "--format", "json", WORKFLOWS], check=False)
    findings = json.loads(result.stdout or "[]")
    summary = [(f["ident"], f["locations"][0]["symbolic"]["key"]) for f in findings]
    assert not findings, summary
    assert result.returncode == 0, result.stderr


def test_zizmor_catches_a_planted_injection(tmp_path: Path) -> None:
    """The check above can fail: zizmor flags an expression expanded into a shell script."""
    zizmor = tool("zizmor")
    (tmp_path / "bad.yml").write_text(
        "on: pull_request\npermissions: {}\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo ${{ github.event.pull_request.title }}\n",
        encoding="utf-8",
    )
    result = run([zizmor, "--offline", "--no-progress", "--format", "json", tmp_path / "bad.yml"], check=False)
    assert "template-injection" in {f["ident"] for f in json.loads(result.stdout)}


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_every_action_is_pinned_by_commit_sha_with_its_release(path: Path) -> None:
    uses = [m for line in path.read_text(encoding="utf-8").splitlines() if (m := USES_LINE.match(line))]
    for match in uses:
        ref, rest = match.group(1), match.group(2)
        assert PINNED_USE.match(ref), f"{path.name}: {ref} is not pinned by a full commit SHA"
        assert re.fullmatch(r"\s+# v\d+\.\d+\.\d+", rest), f"{path.name}: {ref} needs a `# vX.Y.Z` comment"
    # The same action is pinned to one commit everywhere, so an update cannot miss a copy.
    for other in WORKFLOW_FILES:
        for line in other.read_text(encoding="utf-8").splitlines():
            if (m := USES_LINE.match(line)) and uses:
                action, sha = m.group(1).split("@")
                for match in uses:
                    mine_action, mine_sha = match.group(1).split("@")
                    if mine_action == action:
                        assert mine_sha == sha, f"{action} pinned to two commits"


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_permissions_are_least_privilege_per_job(path: Path) -> None:
    workflow = load(path)
    assert workflow.get("permissions") == {}, f"{path.name}: top-level permissions must be {{}}"
    allowed = WRITE_SCOPES_ALLOWED.get(path.name, {})
    for name, job in workflow["jobs"].items():
        permissions = job.get("permissions")
        assert isinstance(permissions, dict), f"{path.name}: job {name} must declare its permissions"
        writes = {scope for scope, level in permissions.items() if level == "write"}
        assert writes <= allowed.get(name, set()), f"{path.name}: job {name} writes {writes}"
        assert all(level in {"read", "write", "none"} for level in permissions.values())
    # Only the alert-to-issue job may write issues.
    if path.name != "sast-issues.yml":
        assert all("issues" not in (job.get("permissions") or {}) for job in workflow["jobs"].values())


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_concurrency_group_and_no_untrusted_checkout(path: Path) -> None:
    workflow = load(path)
    assert "group" in workflow.get("concurrency", {}), f"{path.name}: no concurrency group"
    assert "pull_request_target" not in triggers(workflow)
    for job in workflow["jobs"].values():
        assert "timeout-minutes" in job
        for step in job.get("steps", []):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False


def called_scripts(path: Path) -> set[str]:
    called = set()
    for job in load(path)["jobs"].values():
        for step in job.get("steps", []):
            for match in SCRIPT_CALL.finditer(step.get("run", "")):
                called.add(match.group(1))
    return called


def test_every_script_a_workflow_calls_exists_and_is_executable() -> None:
    called = set().union(*(called_scripts(path) for path in WORKFLOW_FILES))
    assert "scripts/test" in called
    for script in sorted(called):
        target = REPO / script
        assert target.is_file(), f"{script} is called by a workflow but does not exist"
        assert os.access(target, os.X_OK), f"{script} is not executable"
        tracked = run(["git", "ls-files", "--stage", "--", script]).stdout
        assert not tracked or tracked.startswith("100755"), f"{script} is not executable in git"


def test_script_call_pattern_finds_calls() -> None:
    path = WORKFLOWS.parent / "none.yml"
    assert not path.exists()
    found = {m.group(1) for m in SCRIPT_CALL.finditer("set -e; ./scripts/test a && bash .ci/run | scripts/x-y")}
    assert found == {"scripts/test", ".ci/run", "scripts/x-y"}


def test_ci_matrix_covers_every_test_directory_once() -> None:
    ci = load(WORKFLOWS / "ci.yml")
    job = ci["jobs"]["test"]
    groups = [shlex.split(entry["paths"]) for entry in job["strategy"]["matrix"]["include"]]
    listed = [p for group in groups for p in group if p.startswith("tests/") and "/test_" not in p]
    # The one module left out on GitHub (it restarts host servers; see the comment in ci.yml).
    deselected = [group[i + 1] for group in groups for i, arg in enumerate(group) if arg == "--deselect"]
    assert deselected == ["tests/e2e/test_server_restarts.py"]
    directories = sorted(
        f"tests/{d.name}" for d in (REPO / "tests").iterdir() if d.is_dir() and any(d.rglob("test_*.py"))
    )
    assert sorted(listed) == directories, "each test directory must be in exactly one CI group"
    assert not list((REPO / "tests").glob("test_*.py")), "a top-level test module would run in no group"
    assert job["env"]["CI"] == "true"
    ports = {service: spec["ports"] for service, spec in job["services"].items()}
    assert ports == {
        "postgres": ["127.0.0.1:5432:5432"],
        "redis": ["127.0.0.1:6379:6379"],
        "rabbitmq": ["127.0.0.1:5672:5672"],
    }
    run_step = next(s["run"] for s in job["steps"] if "scripts/test" in s.get("run", ""))
    assert "--cov" in run_step
    summary = " ".join(s.get("run", "") for j in ci["jobs"].values() for s in j["steps"])
    assert summary.count("GITHUB_STEP_SUMMARY") >= 2
    assert "--fail-under=85" in summary


def expand_matrix(name: str, entry: dict[str, str]) -> str:
    return re.sub(r"\$\{\{ matrix\.(\w+) \}\}", lambda match: entry[match.group(1)], name)


def check_names() -> dict[str, bool]:
    """Every job's check name, and whether its workflow runs on every pull request (no paths filter)."""
    names: dict[str, bool] = {}
    for path in WORKFLOW_FILES:
        workflow = load(path)
        pull_request = triggers(workflow).get("pull_request")
        always = pull_request is not None and "paths" not in (pull_request or {})
        for job_id, job in workflow["jobs"].items():
            name = job.get("name", job_id)
            include = job.get("strategy", {}).get("matrix", {}).get("include")
            if include:
                for entry in include:
                    names[expand_matrix(name, entry)] = always
            else:
                assert name not in names, f"two jobs report the check {name!r}"
                names[name] = always
    return names


def test_branch_protection_requires_checks_that_exist_and_always_report() -> None:
    config = load(WORKFLOWS.parent / "branch-protection.yml")
    names = check_names()
    for branch, settings in config["branches"].items():
        for context in settings["required_status_checks"]["contexts"]:
            assert context in names, f"{branch}: required check {context!r} is no workflow job"
            assert names[context], f"{branch}: {context!r} does not run on every pull request"
    assert config["repository"]["allow_auto_merge"] is True


def test_automerge_only_for_feature_branches_into_dev() -> None:
    workflow = load(WORKFLOWS / "automerge.yml")
    assert triggers(workflow)["pull_request"]["branches"] == ["dev"]
    job = workflow["jobs"]["enable"]
    assert "startsWith(github.head_ref, 'feature/')" in job["if"]
    assert "head.repo.full_name == github.repository" in job["if"]
    assert "gh pr merge --auto" in job["steps"][0]["run"]
    assert not any("uses" in step for step in job["steps"]), "the job must not check out or run PR code"


def test_sast_runs_when_src_changes_on_feature_branches() -> None:
    on = triggers(load(WORKFLOWS / "security.yml"))
    assert "feature/**" in on["push"]["branches"]
    assert "src/**" in on["push"]["paths"]
    assert "src/**" in on["pull_request"]["paths"]


def test_sast_issue_carries_tool_rule_severity_and_location() -> None:
    workflow = load(WORKFLOWS / "sast-issues.yml")
    assert triggers(workflow) == {"code_scanning_alert": {"types": ["created", "reopened", "appeared_in_branch"]}}
    job = workflow["jobs"]["issue"]
    assert job["permissions"] == {"issues": "write"}
    env = job["env"]
    for key in ("TOOL", "RULE", "SEVERITY", "LOCATION_PATH", "LOCATION_LINE"):
        assert "github.event.alert" in env[key]
    script = job["steps"][0]["run"]
    assert "${{" not in script, "event fields reach the script through the environment only"
    assert "--label sast" in script


def test_tools_installed_by_workflows_use_the_repository_pins() -> None:
    """A tool a workflow installs by version is the version the suite runs (requirements/tools.txt)."""
    pins = {}
    for line in (REPO / "requirements" / "tools.txt").read_text(encoding="utf-8").splitlines():
        if "==" in line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip()] = version.strip()
    installed = {
        match.group(1): match.group(2)
        for path in WORKFLOW_FILES
        for match in re.finditer(r"pip install -q \"?([\w-]+)(?:\[\w+\])?==([\w.]+)", path.read_text(encoding="utf-8"))
    }
    shared = {name: version for name, version in installed.items() if name in pins}
    assert set(shared) == {"bandit", "pip-audit", "detect-secrets"}
    assert shared == {name: pins[name] for name in shared}


def test_pip_audit_fails_on_what_it_cannot_audit() -> None:
    """Without --strict, a package pip-audit cannot look up is skipped and the run still reports no findings."""
    job = load(WORKFLOWS / "security.yml")["jobs"]["pip-audit"]
    command = next(step["run"] for step in job["steps"] if step.get("name") == "pip-audit")
    assert "--strict" in shlex.split(command)
    assert "constraints.txt" in shlex.split(command)
