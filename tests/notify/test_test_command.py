"""`auditflow notify test CHANNEL`: a signed test notification to a real local receiver (exit 0),
a closed port (exit 1 with the error), an unknown channel and a missing routing file named, and the
routing file taken from AUDITFLOW_NOTIFY_CONFIG by default."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from auditflow.cli import main
from tests.notify.conftest import SECRET, SECRET_ENV, closed_port_url, routing_dict
from tests.notify.receiver import Answer, WebhookReceiver


def routing_file(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(routing_dict(url)))
    return path


def run_test(tmp_path: Path, url: str) -> Result:
    return CliRunner().invoke(main, ["notify", "test", "soc", "--config", str(routing_file(tmp_path, url))])


def test_a_test_notification_reaches_the_receiver(tmp_path: Path, secret_env: str) -> None:
    with WebhookReceiver(SECRET) as receiver:
        result = CliRunner().invoke(
            main, ["notify", "test", "soc", "--config", str(routing_file(tmp_path, receiver.url))]
        )
        [request] = receiver.seen()
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: channel 'soc' accepted the test notification in ")
    assert request.signature_ok
    assert request.event == "test"
    assert request.body["alert"]["rule_id"] == "auditflow-test"


def test_the_routing_file_comes_from_the_setting_by_default(
    tmp_path: Path, secret_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with WebhookReceiver(SECRET) as receiver:
        monkeypatch.setenv("AUDITFLOW_NOTIFY_CONFIG", str(routing_file(tmp_path, receiver.url)))
        result = CliRunner().invoke(main, ["notify", "test", "soc"])
        assert len(receiver.seen()) == 1
    assert result.exit_code == 0, result.output


def test_a_closed_port_fails_with_the_error(tmp_path: Path, secret_env: str) -> None:
    result = CliRunner().invoke(
        main, ["notify", "test", "soc", "--config", str(routing_file(tmp_path, closed_port_url()))]
    )
    assert result.exit_code == 1
    assert result.output.startswith("failed: channel 'soc': ConnectError")


def test_a_refusing_receiver_fails_with_its_status(tmp_path: Path, secret_env: str) -> None:
    with WebhookReceiver(SECRET, lambda _n, _key: Answer(401)) as receiver:
        result = CliRunner().invoke(
            main, ["notify", "test", "soc", "--config", str(routing_file(tmp_path, receiver.url))]
        )
    assert result.exit_code == 1
    assert "failed: channel 'soc': HTTP 401: {}" in result.output


def test_an_unknown_channel_is_named_with_the_known_ones(tmp_path: Path, secret_env: str) -> None:
    path = routing_file(tmp_path, closed_port_url())
    result = CliRunner().invoke(main, ["notify", "test", "nope", "--config", str(path)])
    assert result.exit_code == 1
    assert f"{path}: channel 'nope' is not in the routing file (channels: soc)" in result.output


def test_a_missing_secret_or_file_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    monkeypatch.delenv("AUDITFLOW_NOTIFY_CONFIG", raising=False)
    path = routing_file(tmp_path, closed_port_url())
    unset = CliRunner().invoke(main, ["notify", "test", "soc", "--config", str(path)])
    assert unset.exit_code == 1
    assert f"{path}: channels.soc: environment variable {SECRET_ENV} is empty or unset" in unset.output
    missing = CliRunner().invoke(main, ["notify", "test", "soc"])
    assert missing.exit_code == 1
    assert "pass --config FILE or set AUDITFLOW_NOTIFY_CONFIG" in missing.output


def test_help_explains_the_command() -> None:
    result = CliRunner().invoke(main, ["notify", "test", "--help"])
    assert result.exit_code == 0
    assert "Send a test notification through CHANNEL" in result.output
    assert "AUDITFLOW_NOTIFY_CONFIG" in result.output
