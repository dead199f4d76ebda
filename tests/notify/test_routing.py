"""The routing file: validation with the file and field named, secrets from the environment or a
file, route matching, escalation thresholds, and `auditflow notify check`."""

from __future__ import annotations

import hmac
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from auditflow.cli import main
from auditflow.errors import ConfigError
from auditflow.notify.routing import Routing, WebhookChannel, load_routing
from auditflow.notify.webhook import parse_retry_after, sign
from tests.notify.conftest import SECRET, SECRET_ENV, routing_dict


def write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    return path


def test_a_valid_file_loads_with_defaults(tmp_path: Path, secret_env: str) -> None:
    routing = load_routing(write(tmp_path, routing_dict("https://hooks.example/x")))
    assert [route.name for route in routing.routes] == ["all", "critical"]
    assert routing.routes[1].events == ["new", "reopened"]
    channel = routing.channels["soc"]
    assert isinstance(channel, WebhookChannel)
    assert channel.secret().get_secret_value() == SECRET
    assert routing.alert_url("abc") == "https://auditflow.example/alerts/abc"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["routes"][0].update(channels=["nope"]), "routes[0] (all) names unknown channel(s): nope"),
        (lambda d: d["routes"][0].update(min_severity="HIGH"), "routes.0.min_severity: Input should be"),
        (lambda d: d["routes"][0].update(events=["created"]), "routes.0.events.0: Input should be"),
        (lambda d: d["routes"][1].update(name="all"), "route names must be unique: all"),
        (lambda d: d["channels"]["soc"].update(url="ftp://x"), "channels.soc.url: String should match"),
        (lambda d: d["channels"]["soc"].update(secret="inline"), "channels.soc.secret: Extra inputs"),
        (lambda d: d["channels"]["soc"].pop("secret_env"), "give exactly one of secret_env or secret_file"),
        (lambda d: d["delivery"].update(lease=1), "delivery.lease must be longer than channels.soc.timeout"),
        (
            lambda d: d["routes"][0].update(digest="5m", throttle="15m"),
            "routes.0: Value error, give either digest or throttle, not both",
        ),
        (lambda d: d["routes"][0].update(digest="0s"), "routes.0.digest: Input should be greater than"),
        (lambda d: d["routes"][0].update(digest="2d"), "routes.0.digest: Input should be less than or equal"),
        (lambda d: d["routes"][0].update(digest="soon"), "routes.0.digest: Value error, invalid duration 'soon'"),
        (lambda d: d["delivery"].update(keep_sent="0s"), "delivery.keep_sent: Input should be greater than"),
    ],
)
def test_mistakes_name_the_file_and_the_field(tmp_path: Path, secret_env: str, change: Any, message: str) -> None:
    document = routing_dict("https://hooks.example/x")
    change(document)
    path = write(tmp_path, document)
    with pytest.raises(ConfigError) as error:
        load_routing(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)


def test_durations_are_written_like_the_rules_or_in_seconds(tmp_path: Path, secret_env: str) -> None:
    document = routing_dict("https://hooks.example/x")
    document["routes"][0].update(digest="5m")
    document["routes"][1].update(throttle="1h30m")
    document["delivery"].update(keep_sent="7d", keep_dead="PT720H", purge_interval=900, lease="90s")
    routing = load_routing(write(tmp_path, document))
    assert routing.routes[0].digest == timedelta(minutes=5)
    assert routing.routes[1].throttle == timedelta(minutes=90)
    assert routing.routes[1].digest is None  # single messages by default
    delivery = routing.delivery
    assert (delivery.keep_sent, delivery.keep_dead) == (timedelta(days=7), timedelta(days=30))
    assert (delivery.purge_interval, delivery.lease) == (timedelta(minutes=15), timedelta(seconds=90))
    assert delivery.initial_backoff == timedelta(milliseconds=50)  # fractional seconds still work


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "channels:\n  soc: [unclosed\nroutes: []\n")
    with pytest.raises(ConfigError, match=rf"^{path}:3: not valid YAML"):
        load_routing(path)


def test_secrets_come_from_the_environment_or_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    path = write(tmp_path, routing_dict("https://hooks.example/x"))
    with pytest.raises(ConfigError, match=f"channels.soc: environment variable {SECRET_ENV} is empty or unset"):
        load_routing(path)
    unresolved = load_routing(path, resolve_secrets=False).channels["soc"]
    assert isinstance(unresolved, WebhookChannel)
    assert unresolved.secret_env == SECRET_ENV
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n")
    document = routing_dict("https://hooks.example/x")
    document["channels"]["soc"] = {"type": "webhook", "url": "https://hooks.example/x", "secret_file": str(secret_file)}
    channel = load_routing(write(tmp_path, document)).channels["soc"]
    assert isinstance(channel, WebhookChannel)
    assert channel.secret().get_secret_value() == "from-a-file"


def test_routes_match_on_every_given_condition() -> None:
    raw = routing_dict("https://hooks.example/x")
    raw["routes"] = [
        {
            "name": "r",
            "channels": ["soc"],
            "min_severity": "ERROR",
            "rule_ids": ["ssh-brute"],
            "tags": ["auth", "ssh"],
            "hosts": ["web-1"],
            "users": ["root"],
        }
    ]
    route = Routing.model_validate(raw).routes[0]
    alert = {
        "severity": "CRITICAL",
        "rule_id": "ssh-brute",
        "tags": ["ssh"],
        "server_hostname": "web-1",
        "user_id": "root",
    }
    assert route.matches(alert)
    for field, value in [
        ("severity", "WARNING"),
        ("rule_id", "other"),
        ("tags", ["files"]),
        ("server_hostname", "db-1"),
        ("user_id", "alice"),
    ]:
        assert not route.matches({**alert, field: value}), field
    assert route.crosses(9, 10)
    assert route.crosses(5, 2000)
    assert not route.crosses(10, 99)


def test_signature_and_retry_after() -> None:
    assert sign("k", 1700000000, b"{}") == ("t=1700000000,v1=" + hmac.new(b"k", b"1700000000.{}", "sha256").hexdigest())
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_notify_check_command(tmp_path: Path, secret_env: str) -> None:
    runner = CliRunner()
    good = write(tmp_path, routing_dict("https://hooks.example/x"))
    result = runner.invoke(main, ["notify", "check", str(good)])
    assert result.exit_code == 0, result.output
    assert result.output == f"ok: {good}: 1 channel(s), 2 route(s)\n"
    document = routing_dict("https://hooks.example/x")
    document["routes"][0]["channels"] = ["missing"]
    bad = write(tmp_path, document)
    result = runner.invoke(main, ["notify", "check", str(bad)])
    assert result.exit_code == 1
    assert "names unknown channel(s): missing" in result.output


def test_the_documented_verification_accepts_our_signature_only() -> None:
    """The snippet in docs/notifications.md, run as a receiver would run it."""
    document = (Path(__file__).resolve().parents[2] / "docs" / "notifications.md").read_text()
    snippet = document.split("### Verifying the signature")[1].split("```python")[1].split("```")[0]
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)
    body = b'{"event":"new"}'
    header = sign("s3cret", int(time.time()), body)
    assert namespace["verify"]("s3cret", header, body)
    assert not namespace["verify"]("other", header, body)
    assert not namespace["verify"]("s3cret", header, body + b" ")
    assert not namespace["verify"]("s3cret", sign("s3cret", int(time.time()) - 3600, body), body)
