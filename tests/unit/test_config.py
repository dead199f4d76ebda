from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from auditflow.backends.broker.urls import split_broker_urls
from auditflow.config import Settings, load_settings, reference_markdown
from auditflow.dependencies import redact_url
from auditflow.errors import ConfigError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("AUDITFLOW_"):
            monkeypatch.delenv(name)


def test_defaults_are_the_embedded_mode() -> None:
    settings = load_settings()
    assert settings.broker_url == "memory://"
    assert settings.state_url == "memory://"
    assert settings.effective_database_url == "sqlite:///data/auditflow.sqlite3"


def test_tokens_are_comma_separated_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDITFLOW_API_TOKENS", "aaaaaaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbbbbbb")
    settings = load_settings()
    assert [t.secret.get_secret_value() for t in settings.api_tokens] == ["a" * 20, "b" * 20]
    assert [(t.name, t.bare) for t in settings.api_tokens] == [("token#1", True), ("token#2", True)]
    assert "aaaa" not in repr(settings)


def test_short_tokens_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDITFLOW_API_TOKENS", "short")
    with pytest.raises(ConfigError, match=r"api_tokens: .*token #1 is shorter than 16"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("broker_url", "amqp://guest:guest@rabbitmq.prod:5672/"),
        ("database_url", "postgresql://postgres:postgres@db.example:5432/auditflow"),
    ],
)
def test_default_passwords_are_refused_for_remote_hosts(name: str, url: str) -> None:
    overrides: dict[str, Any] = {name: url}
    with pytest.raises(ConfigError, match="well-known default password"):
        load_settings(**overrides)


def test_default_passwords_are_allowed_on_loopback() -> None:
    settings = load_settings(broker_url="amqp://guest:guest@127.0.0.1:5672/")
    assert settings.broker_url.startswith("amqp://")


def test_broker_url_takes_the_nodes_of_a_cluster_separated_by_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDITFLOW_BROKER_URL", "amqp://u:p@h1:5672/, amqp://u:p@h2:5673/,amqp://u:p@h3:5674/")
    settings = load_settings()
    assert split_broker_urls(settings.broker_url) == [
        "amqp://u:p@h1:5672/",
        "amqp://u:p@h2:5673/",
        "amqp://u:p@h3:5674/",
    ]
    assert redact_url(settings.broker_url) == "amqp://h1:5672,amqp://h2:5673,amqp://h3:5674"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("amqp://u:p@h1/,,amqp://u:p@h2/", r"broker_url: .*part 2 of 3 is empty"),
        ("amqp://u:p@h1/,memory://", r"broker_url: .*part 2 of 2 \('memory://'\): .*amqp://"),
        ("amqp://u:p@h1/,amqp://u:secret@h2:99999/", r"part 2 of 2 \('amqp://\*\*\*@h2:99999/'\) has an invalid port"),
        ("amqp://u:p@h1/,amqp:///vhost", r"part 2 of 2 .* has no host"),
        ("amqp://u:p@h1/,amqps://u:p@h2/", r"mix amqp:// and amqps://"),
        ("amqp://u:p@h1/,redis://h2/", r"part 2 of 2 \('redis://h2/'\)"),
    ],
)
def test_a_bad_part_of_a_broker_url_list_is_named_without_credentials(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        load_settings(broker_url=url)
    assert "secret" not in str(refused.value)


def test_default_passwords_are_refused_for_any_remote_node_of_a_list() -> None:
    with pytest.raises(ConfigError, match="well-known default password"):
        load_settings(broker_url="amqp://u:p@127.0.0.1:5672/,amqp://guest:guest@rabbitmq-2.prod:5672/")


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"state_url: .*unsupported scheme 'kafka'"):
        load_settings(state_url="kafka://x")
    with pytest.raises(ConfigError, match=r"state_url: .*unsupported scheme 'redis\+sentinel'"):
        load_settings(state_url="redis+sentinel://h:26379")


def test_redis_cluster_state_urls_are_checked() -> None:
    url = "rediss+cluster://10.0.0.1:7000,10.0.0.2:7000?wait_replicas=1"
    assert load_settings(state_url=url).state_url == url
    with pytest.raises(ConfigError, match=r"state_url: .*host:port seed nodes separated by commas, got 'h2'"):
        load_settings(state_url="redis+cluster://h1:7000,h2")
    with pytest.raises(ConfigError, match=r"state_url: .*no database number"):
        load_settings(state_url="redis+cluster://h1:7000/2")


def test_yaml_file_is_read_and_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "auditflow.yaml"
    config.write_text("generator_rate: 12\nlog_level: DEBUG\n")
    monkeypatch.setenv("AUDITFLOW_LOG_LEVEL", "ERROR")
    settings = load_settings(config)
    assert settings.generator_rate == 12
    assert settings.log_level == "ERROR"


def test_cli_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDITFLOW_PORT", "9000")
    assert load_settings(port=9100).port == 9100


def test_unknown_key_in_yaml_names_the_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("generator_rat: 12\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: invalid settings: generator_rat: Extra inputs"):
        load_settings(config)


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_settings(tmp_path / "nope.yaml")


def test_configuration_reference_is_current() -> None:
    assert DOCS.read_text() == reference_markdown(), "docs/configuration.md is stale: regenerate it"


def test_every_setting_is_documented() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description"


def test_list_settings_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDITFLOW_READINESS_API_URL", "http://a:8000, http://b:5001")
    assert load_settings().readiness_api_url == ["http://a:8000", "http://b:5001"]


def test_invalid_environment_values_are_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDITFLOW_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="port"):
        load_settings()
