"""Importing a directory that mixes valid, unsupported and broken Sigma files: every rule is in the
report with its reason, the valid ones are written and load as AuditFlow rules, and the command's
exit status says whether anything converted."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner
from sigma.rule import SigmaRule

from auditflow.cli import main
from auditflow.rules import check_files, load_rules
from auditflow.rules.sigma.convert import rule_metadata
from tests.sigma.helpers import k8s_rule

VALID = k8s_rule(
    "description: 'Exec into a pod {with braces}'\n"
    "references: [https://example.invalid/exec, 'Internal runbook, page 12', 'javascript:alert(1)']\n"
    "falsepositives: [Debugging by the platform team]\ntags: [attack.execution, attack.t1609]\n"
    "detection:\n  selection:\n    verb: create\n    objectRef.subresource: exec\n  condition: selection\n",
    title="Exec into pod",
    serial=1,
)
UNSUPPORTED = """title: Windows thing
id: 6f1e2d3c-0000-4000-8000-000000000002
status: test
level: high
logsource: {product: windows, category: process_creation}
detection:
  selection: {Image|endswith: '\\\\cmd.exe'}
  condition: selection
"""
NO_CONDITION = k8s_rule("detection:\n  selection:\n    verb: get\n", title="No condition", serial=3)
BAD_YAML = "title: [unclosed\nlogsource: {product: linux\n"
UNDEFINED = k8s_rule("detection:\n  selection:\n    verb: get\n  condition: selection and other\n", serial=4)


def write_mixed(directory: Path) -> None:
    (directory / "nested").mkdir(parents=True)
    (directory / "exec.yml").write_text(VALID, encoding="utf-8")
    (directory / "windows.yml").write_text(UNSUPPORTED, encoding="utf-8")
    (directory / "nested" / "no_condition.yaml").write_text(NO_CONDITION, encoding="utf-8")
    (directory / "nested" / "bad.yml").write_text(BAD_YAML, encoding="utf-8")
    (directory / "undefined.yml").write_text(UNDEFINED, encoding="utf-8")
    (directory / "README.md").write_text("not a rule", encoding="utf-8")


def test_mixed_directory_reports_every_file_and_writes_the_valid_rules(tmp_path: Path) -> None:
    source, out = tmp_path / "sigma", tmp_path / "rules"
    write_mixed(source)
    result = CliRunner().invoke(main, ["rules", "import-sigma", str(source), "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    by_file = {Path(line.split(": ", 1)[0].split()[-1]).name: line for line in lines if ": " in line and "/" in line}
    assert by_file["exec.yml"].startswith("converted ")
    assert by_file["exec.yml"].endswith("sigma-6f1e2d3c-0000-4000-8000-000000000001")
    assert by_file["windows.yml"] == (
        f"unsupported {source / 'windows.yml'}: Windows thing: "
        "logsource product 'windows' has no AuditFlow parser (linux, kubernetes)"
    )
    assert by_file["no_condition.yaml"].startswith("broken ")
    assert "condition" in by_file["no_condition.yaml"].lower()
    assert by_file["bad.yml"].startswith("broken ")
    assert by_file["bad.yml"].endswith("invalid YAML at line 2, column 10: expected ',' or ']', but got ':'")
    assert by_file["undefined.yml"].startswith("broken ")
    assert "'other' not defined" in by_file["undefined.yml"]
    assert "5 Sigma rules: 1 converted, 0 referenced, 1 unsupported, 3 broken" in lines

    assert check_files([out]) == []
    ruleset = load_rules(out)
    [rule] = ruleset.rules
    assert rule.id == "sigma-6f1e2d3c-0000-4000-8000-000000000001"
    assert rule.severity == "ERROR"
    assert set(rule.tags) == {"sigma", "attack.execution", "attack.t1609", "sigma.level.high"}
    assert rule.description == "Exec into a pod {{with braces}}"
    assert rule.template.render(lambda _name: None) == "Exec into a pod {with braces}"
    # Sigma's metadata is in the rule's own keys, where alerts and the rules page find it.
    assert rule.references == ("https://example.invalid/exec",)
    assert rule.falsepositives == ("Debugging by the platform team",)
    assert rule.origin is not None
    assert rule.origin.model_dump() == {
        "kind": "sigma",
        "id": "6f1e2d3c-0000-4000-8000-000000000001",
        "title": "Exec into pod",
        "level": "high",
        "status": "test",
        "file": "exec.yml",
    }
    # A reference that is no http(s) URL cannot be a link: left out, and the report says so.
    notes = [line.strip() for line in lines if line.lstrip().startswith("note:")]
    assert notes == [
        "note: reference left out, not an http(s) URL: Internal runbook, page 12",
        "note: reference left out, not an http(s) URL: javascript:alert(1)",
    ]


def test_nothing_converted_exits_non_zero(tmp_path: Path) -> None:
    (tmp_path / "windows.yml").write_text(UNSUPPORTED, encoding="utf-8")
    result = CliRunner().invoke(main, ["rules", "import-sigma", str(tmp_path)])
    assert result.exit_code == 1
    assert "1 Sigma rules: 0 converted, 0 referenced, 1 unsupported, 0 broken" in result.output


def test_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["rules", "import-sigma", str(tmp_path / "absent")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_metadata_that_does_not_fit_a_rule_is_left_out_with_a_note() -> None:
    urls = [f"https://example.invalid/{n}" for n in range(40)]
    sigma = SigmaRule.from_yaml(
        k8s_rule("detection:\n  selection:\n    verb: get\n  condition: selection\n")
        + yaml.safe_dump(
            {
                "references": [urls[0], urls[0], "https://example.invalid/" + "y" * 2000, "see the book", *urls[1:]],
                "falsepositives": ["  spread\n  over lines  ", "x" * 600],
            }
        )
    )
    keys, notes = rule_metadata(sigma)
    assert keys["references"] == urls[:32]  # duplicates dropped, then the first 32
    assert keys["falsepositives"] == ["spread over lines", "x" * 500]
    assert keys["origin"] == {
        "kind": "sigma",
        "id": "6f1e2d3c-0000-4000-8000-000000000001",
        "title": "test rule",
        "level": "high",
        "status": "test",
    }
    assert [note.split(":")[0] for note in notes] == [
        "reference left out, longer than 2000 characters",
        "reference left out, not an http(s) URL",
        "8 references left out (at most 32 are kept)",
        "false positives longer than 500 characters shortened",
    ]
