"""`import-sigma --pipeline`: a pySigma processing pipeline (a YAML file written here) renames a
field and moves a logsource before AuditFlow's mapping; the built-in `auditflow` pipeline is the
default; a Sigma file in a rules directory can name its pipeline in a comment; bad names and files
are clear errors."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from auditflow.backends.state import WindowState
from auditflow.cli import main
from auditflow.model import Event
from auditflow.parsers.base import Unparsed
from auditflow.parsers.syslog import SyslogParser
from auditflow.rules import check_files, load_rules
from auditflow.rules.sigma.importer import import_sigma
from auditflow.rules.sigma.pipelines import load
from tests.sigma.helpers import fire

# A vendor's rule: its own product name and its own field name for the account.
RULE = """title: Root login over SSH from outside
id: 8b3c4d5e-0000-4000-8000-000000000001
status: test
level: high
logsource: {product: acme-bastion, service: ssh-gateway}
detection:
  selection:
    TargetAccount: root
    keywords|contains: Accepted
  condition: selection
"""
PIPELINE = """name: acme bastion to linux sshd
priority: 20
transformations:
  - id: acme_fields
    type: field_name_mapping
    mapping:
      TargetAccount: user
      keywords: message
  - id: acme_logsource
    type: change_logsource
    product: linux
    service: sshd
    rule_conditions:
      - type: logsource
        product: acme-bastion
"""
LINES = [
    "Dec  3 04:10:11 bastion sshd[901]: Accepted password for root from 203.0.113.5 port 50111 ssh2",
    "Dec  3 04:10:12 bastion sshd[902]: Accepted password for alice from 203.0.113.5 port 50112 ssh2",
    "Dec  3 04:10:13 bastion sshd[903]: Failed password for root from 203.0.113.5 port 50113 ssh2",
]


def _write(tmp_path: Path) -> tuple[Path, Path]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "acme.yml").write_text(RULE, encoding="utf-8")
    pipeline = tmp_path / "acme-pipeline.yml"
    pipeline.write_text(PIPELINE, encoding="utf-8")
    return rules, pipeline


def _events() -> list[Event]:
    parser = SyslogParser()
    events: list[Event] = []
    for line in LINES:
        outcome = parser.feed(line)
        assert not isinstance(outcome, Unparsed)
        events.extend(outcome)
    return events


async def test_a_pipeline_file_renames_fields_and_moves_the_logsource(tmp_path: Path, state: WindowState) -> None:
    rules, pipeline = _write(tmp_path)
    [without] = import_sigma([rules]).outcomes
    assert without.status == "unsupported"
    assert without.reason == "logsource product 'acme-bastion' has no AuditFlow parser (linux, kubernetes)"

    [outcome] = import_sigma([rules], load([str(pipeline)])).outcomes
    assert outcome.status == "converted", outcome.reason
    assert outcome.converted is not None
    rule = outcome.converted.rule
    assert rule["where"]["details.event.dataset"] == {"in": ["sshd"]}
    assert "user_id" in rule["where"]
    parsed = _events()
    alerts = await fire(state, rule, parsed)
    events = {e.event_id: e for e in parsed}
    assert len(alerts) == 1
    [event_id] = alerts[0].event_ids
    assert events[event_id].details["event"]["original"] == LINES[0]


def test_the_command_takes_pipeline_files_and_the_builtin_name(tmp_path: Path) -> None:
    rules, pipeline = _write(tmp_path)
    out = tmp_path / "out"
    runner = CliRunner()
    plain = runner.invoke(main, ["rules", "import-sigma", str(rules), "--pipeline", "auditflow"])
    assert plain.exit_code == 1  # the built-in mapping alone knows no acme-bastion product
    assert "1 Sigma rules: 0 converted" in plain.output
    result = runner.invoke(
        main,
        [
            "rules",
            "import-sigma",
            str(rules),
            "--pipeline",
            str(pipeline),
            "--pipeline",
            "auditflow",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "1 Sigma rules: 1 converted" in result.output
    [written] = yaml.safe_load((out / "acme.yaml").read_text(encoding="utf-8"))
    assert written["id"] == "sigma-8b3c4d5e-0000-4000-8000-000000000001"


def test_unknown_names_and_bad_pipeline_files_are_usage_errors(tmp_path: Path) -> None:
    rules, pipeline = _write(tmp_path)
    runner = CliRunner()
    unknown = runner.invoke(main, ["rules", "import-sigma", str(rules), "--pipeline", "acme"])
    assert unknown.exit_code == 2
    assert "unknown pipeline 'acme'" in unknown.output
    assert "auditflow" in unknown.output
    missing = runner.invoke(main, ["rules", "import-sigma", str(rules), "--pipeline", str(tmp_path / "none.yml")])
    assert missing.exit_code == 2
    assert "none.yml: no such file" in missing.output
    pipeline.write_text("name: x\ntransformations:\n  - type: field_name_mapping\n    mapping: [unclosed\n")
    invalid = runner.invoke(main, ["rules", "import-sigma", str(rules), "--pipeline", str(pipeline)])
    assert invalid.exit_code == 2
    assert f"pipeline {pipeline}: invalid YAML at line 5, column 1" in invalid.output
    pipeline.write_text("name: x\ntransformations:\n  - type: no_such_transformation\n")
    wrong = runner.invoke(main, ["rules", "import-sigma", str(rules), "--pipeline", str(pipeline)])
    assert wrong.exit_code == 2
    assert f"pipeline {pipeline}: not a pySigma processing pipeline" in wrong.output


def test_a_sigma_file_in_the_rules_directory_names_its_pipeline(tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "acme.pipeline").write_text(PIPELINE, encoding="utf-8")
    sigma = rules_dir / "acme.sigma.yml"
    sigma.write_text("# auditflow-sigma-pipeline: ../pipelines/acme.pipeline\n" + RULE, encoding="utf-8")
    ruleset = load_rules(rules_dir)
    assert [rule.id for rule in ruleset.rules] == ["sigma-8b3c4d5e-0000-4000-8000-000000000001"]
    assert ruleset.warnings == ()

    sigma.write_text("# auditflow-sigma-pipeline: ../pipelines/absent.yml\n" + RULE, encoding="utf-8")
    assert check_files([rules_dir]) == [
        f"{sigma}: pipeline {rules_dir / '..' / 'pipelines' / 'absent.yml'}: no such file"
    ]


def test_a_rule_the_pipeline_refuses_is_unsupported_with_its_message(tmp_path: Path) -> None:
    rules, pipeline = _write(tmp_path)
    pipeline.write_text(
        "name: no gateway rules\ntransformations:\n  - type: rule_failure\n"
        "    message: gateway logs are not collected\n"
        "    rule_conditions:\n      - type: logsource\n        service: ssh-gateway\n",
        encoding="utf-8",
    )
    [outcome] = import_sigma([rules], load([str(pipeline)])).outcomes
    assert outcome.status == "unsupported"
    assert outcome.reason == "processing pipeline no gateway rules: gateway logs are not collected"
