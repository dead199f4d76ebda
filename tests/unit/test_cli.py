from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditflow.cli import main
from auditflow.rules import DEFAULT_RULES_DIR


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in list(__import__("os").environ):
        if name.startswith("AUDITFLOW_"):
            monkeypatch.delenv(name)
    return CliRunner()


@pytest.mark.parametrize("command", [[], ["run"], ["serve"], ["migrate"], ["rules", "check"], ["send"]])
def test_every_command_explains_itself(runner: CliRunner, command: list[str]) -> None:
    result = runner.invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage: " in result.output
    assert len(result.output.splitlines()) > 4


def test_rules_check_accepts_the_default_pack(runner: CliRunner) -> None:
    result = runner.invoke(main, ["rules", "check", str(DEFAULT_RULES_DIR)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: ")


def test_rules_check_names_file_rule_and_field(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "rules:\n  - id: burst\n    name: Burst\n    severity: ERROR\n    kind: threshold\n"
        "    where: {event_type: user_login}\n    count: 3\n    window: soon\n"
    )
    result = runner.invoke(main, ["rules", "check", str(bad)])
    assert result.exit_code == 1
    assert "bad.yaml" in result.output
    assert "burst" in result.output
    assert "window" in result.output


def test_rules_check_reports_a_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["rules", "check", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 1
    assert "missing.yaml" in result.output


def test_serve_requires_api_tokens(runner: CliRunner) -> None:
    result = runner.invoke(main, ["serve", "analysis"])
    assert result.exit_code == 1
    assert "AUDITFLOW_API_TOKENS" in result.output


def test_invalid_settings_are_reported_with_the_file(runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "auditflow.yaml"
    config.write_text("port: seventy\n")
    result = runner.invoke(main, ["run", "--config", str(config)])
    assert result.exit_code == 1
    assert "auditflow.yaml" in result.output
    assert "port" in result.output


def test_migrate_creates_the_schema(runner: CliRunner, tmp_path: Path) -> None:
    database = tmp_path / "alerts.db"
    result = runner.invoke(main, ["migrate", "--database-url", f"sqlite:///{database}"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("select name from sqlite_master where type='table'")}
    assert {"alerts", "alert_events", "alert_history", "alembic_version"} <= tables


def test_migrate_reports_an_unreachable_database(runner: CliRunner) -> None:
    result = runner.invoke(main, ["migrate", "--database-url", "postgresql://nobody@127.0.0.1:1/none"])
    assert result.exit_code == 1
    assert "migration failed" in result.output
