"""`*.sigma.yml` files in a rules directory: converted on load, unsupported rules reported as
warnings while the others load, broken Sigma refused, a clear error without pySigma, and hot reload."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditflow.cli import main
from auditflow.errors import RuleError
from auditflow.rules import check_files, load_rules
from auditflow.rules.loader import check_rules
from tests.sigma.helpers import k8s_rule

EXEC = k8s_rule(
    "detection:\n  selection:\n    verb: create\n    objectRef.subresource: exec\n  condition: selection\n",
    title="Exec into pod",
    serial=1,
)
HOSTPATH = k8s_rule(
    "detection:\n  selection:\n    seccompProfile: Unconfined\n  condition: selection\n", title="Host path", serial=2
)
OWN = "rules:\n  - {id: own, name: Own, kind: match, severity: INFO, where: {event_type: user_login}}\n"


def test_sigma_files_load_beside_our_own_and_unsupported_rules_are_warnings(tmp_path: Path) -> None:
    (tmp_path / "own.yaml").write_text(OWN, encoding="utf-8")
    (tmp_path / "k8s.sigma.yml").write_text(EXEC + "---\n" + HOSTPATH, encoding="utf-8")
    ruleset = load_rules(tmp_path)
    assert [rule.id for rule in ruleset.rules] == ["sigma-6f1e2d3c-0000-4000-8000-000000000001", "own"]
    assert ruleset.sources["sigma-6f1e2d3c-0000-4000-8000-000000000001"] == str(tmp_path / "k8s.sigma.yml")
    # Loaded directly, a Sigma rule keeps its metadata as the imported one does.
    origin = ruleset.rules[0].origin
    assert origin is not None
    assert (origin.id, origin.level, origin.status, origin.file) == (
        "6f1e2d3c-0000-4000-8000-000000000001",
        "high",
        "test",
        "k8s.sigma.yml",
    )
    assert ruleset.warnings == (
        f"{tmp_path / 'k8s.sigma.yml'}: Sigma rule '6f1e2d3c-0000-4000-8000-000000000002': not loaded, "
        "unsupported: field 'seccompProfile' is not in AuditFlow's Kubernetes audit events",
    )
    result = check_rules([tmp_path])
    assert result.problems == []
    assert result.warnings == list(ruleset.warnings)

    cli = CliRunner().invoke(main, ["rules", "check", str(tmp_path)])
    assert cli.exit_code == 0, cli.output
    assert f"warning: {ruleset.warnings[0]}" in cli.output
    strict = CliRunner().invoke(main, ["rules", "check", "--strict", str(tmp_path)])
    assert strict.exit_code == 1


def test_broken_sigma_is_an_error_naming_the_file_and_line(tmp_path: Path) -> None:
    file = tmp_path / "bad.sigma.yaml"
    file.write_text("title: [unclosed\nlogsource: {product: linux\n", encoding="utf-8")
    assert check_files([tmp_path]) == [f"{file}: invalid YAML at line 2, column 10: expected ',' or ']', but got ':'"]
    undefined = k8s_rule("detection:\n  selection:\n    verb: get\n  condition: selection and other\n", serial=4)
    file.write_text(undefined, encoding="utf-8")
    [problem] = check_files([tmp_path])
    assert problem.startswith(f"{file}: Sigma rule '6f1e2d3c-0000-4000-8000-000000000004': ")
    assert "'other' not defined" in problem
    with pytest.raises(RuleError):
        load_rules(tmp_path)


def test_without_pysigma_a_sigma_file_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "own.yaml").write_text(OWN, encoding="utf-8")
    file = tmp_path / "k8s.sigma.yml"
    file.write_text(EXEC, encoding="utf-8")
    # A None entry makes the import fail as it does when the extra is not installed.
    monkeypatch.setitem(sys.modules, "auditflow.rules.sigma.importer", None)
    [problem] = check_files([tmp_path])
    assert problem.startswith(f"{file}: Sigma rules need pySigma: pip install 'auditflow[sigma]'")
    file.unlink()
    assert [rule.id for rule in load_rules(tmp_path).rules] == ["own"]


def test_a_correlation_may_reference_a_rule_of_another_sigma_file(tmp_path: Path) -> None:
    (tmp_path / "base.sigma.yml").write_text(EXEC.replace("status: test", "name: pod_exec\nstatus: test"))
    (tmp_path / "burst.sigma.yml").write_text(
        "title: Exec burst\nid: 6f1e2d3c-0000-4000-8000-000000000009\nstatus: test\nlevel: high\n"
        "correlation:\n  type: event_count\n  rules: [pod_exec]\n  group-by: [user.username]\n"
        "  timespan: 5m\n  condition: {gte: 3}\n",
        encoding="utf-8",
    )
    ruleset = load_rules(tmp_path)
    burst = ruleset.by_id["sigma-6f1e2d3c-0000-4000-8000-000000000009"]
    assert burst.kind == "threshold"
    assert ruleset.sources[burst.id] == str(tmp_path / "burst.sigma.yml")


async def test_readiness_counts_the_rules_not_loaded(tmp_path: Path) -> None:
    from auditflow.config import load_settings
    from auditflow.runtime import Runtime

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "k8s.sigma.yml").write_text(EXEC + "---\n" + HOSTPATH, encoding="utf-8")
    runtime = Runtime(load_settings(data_dir=tmp_path, rules_path=rules), "run")
    assert runtime.rules is not None
    async with runtime.rules:
        readiness = await runtime.readiness()
        [entry] = [dependency for dependency in readiness.dependencies if dependency.name == "rules"]
        assert entry.status == "up"
        assert entry.detail == f"{rules} (1 rule not loaded: GET /api/v1/rules lists why)"
        assert runtime.rules_status().warnings == list(runtime.rules.ruleset.warnings)
