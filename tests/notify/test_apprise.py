"""The apprise channel through apprise's own `json://` service to a local receiver: title and body in
text and markdown (alert values escaped), a failing service reported without its URL, a typo in a URL
refused when the routing is applied, and a clear error when the optional package is missing."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import yaml
from click.testing import CliRunner

from auditflow.cli import main
from auditflow.errors import ConfigError
from auditflow.notify.channels import SendResult, build_sender
from auditflow.notify.http import HttpClient
from auditflow.notify.routing import AppriseChannel, load_routing
from tests.notify.conftest import alert_payload, digest_payload
from tests.notify.receiver import Answer, WebhookReceiver

URLS_ENV = "AUDITFLOW_TEST_APPRISE_URLS"


def json_url(receiver: WebhookReceiver) -> str:
    return receiver.url.replace("http://", "json://", 1)


async def send(urls: str, payload: dict[str, Any], monkeypatch: pytest.MonkeyPatch, **fields: Any) -> SendResult:
    monkeypatch.setenv(URLS_ENV, urls)
    channel = AppriseChannel.model_validate({"type": "apprise", "urls_env": URLS_ENV, "timeout": 5, **fields})
    async with HttpClient() as client:
        return await build_sender(channel, client).send(uuid4(), payload["event"], payload)


async def test_text_message_to_every_url(monkeypatch: pytest.MonkeyPatch) -> None:
    payload = alert_payload(severity="CRITICAL", rule_id="ssh-brute-force", server_hostname="web-1")
    with WebhookReceiver("unused") as first, WebhookReceiver("unused") as second:
        result = await send(f"{json_url(first)}\n{json_url(second)}", payload, monkeypatch)
        requests = first.seen() + second.seen()
    assert result == SendResult(True)
    assert len(requests) == 2
    for request in requests:
        assert request.body["title"] == "CRITICAL ssh-brute-force on web-1 (new)"
        assert request.body["type"] == "failure"  # apprise's type for a critical alert
        message = request.body["message"]
        assert message.startswith("CRITICAL ssh-brute-force on web-1 (new)\n\nA new alert was raised.")
        assert "Rule id:     ssh-brute-force" in message
        assert payload["alert_url"] in message


async def test_markdown_escapes_alert_values(monkeypatch: pytest.MonkeyPatch) -> None:
    payload = alert_payload("resolved", description="*bold* <img src=x> [link](http://evil.example)")
    with WebhookReceiver("unused") as receiver:
        result = await send(json_url(receiver), payload, monkeypatch, format="markdown")
        [request] = receiver.seen()
    assert result.ok
    assert request.body["type"] == "success"
    message = request.body["message"]
    assert r"\*bold\* &lt;img src=x\> \[link\]\(http://evil\.example\)" in message
    assert f"[Open the alert in AuditFlow]({payload['alert_url']})" in message


async def test_a_digest_lists_its_alerts(monkeypatch: pytest.MonkeyPatch) -> None:
    with WebhookReceiver("unused") as receiver:
        assert (await send(json_url(receiver), digest_payload(70), monkeypatch)).ok
        [request] = receiver.seen()
    assert request.body["title"] == "Digest: 70 alert changes (route all)"
    assert request.body["message"].count("\n- WARNING failed-login-burst on web-1") == 50
    assert "and 20 more" in request.body["message"]


async def test_a_failing_service_is_reported_without_its_url(monkeypatch: pytest.MonkeyPatch) -> None:
    with WebhookReceiver("unused", lambda _n, _key: Answer(500)) as receiver:
        url = json_url(receiver).replace("json://", "json://user:pa55word@", 1)
        result = await send(url, alert_payload(), monkeypatch)
    assert not result.ok
    assert result.error is not None
    assert result.error.startswith("apprise failure: ")
    assert "500" in result.error
    assert "pa55word" not in result.error


async def test_an_unknown_url_is_refused_when_the_sender_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"apprise URL #2 \(scheme nosuchservice\) is not a URL apprise can use"):
        await send("json://127.0.0.1:9/x, nosuchservice://token@host", alert_payload(), monkeypatch)


def test_a_missing_apprise_package_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "routing.yaml"
    channel = {"type": "apprise", "urls_env": URLS_ENV}
    path.write_text(yaml.safe_dump({"channels": {"push": channel}, "routes": [{"name": "all", "channels": ["push"]}]}))
    monkeypatch.setitem(sys.modules, "apprise", None)  # what an environment without the extra sees
    with pytest.raises(ConfigError) as error:
        load_routing(path, resolve_secrets=False)
    assert str(error.value) == (
        f"{path}: channels.push: Value error, the apprise channel needs the apprise package: "
        "pip install 'auditflow[apprise]'"
    )


async def test_a_service_that_hangs_ends_at_the_channel_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    with WebhookReceiver("unused", lambda _n, _key: Answer(delay=3.0)) as receiver:
        started = time.monotonic()
        result = await send(json_url(receiver), alert_payload(), monkeypatch, timeout=1)
        elapsed = time.monotonic() - started
    assert not result.ok
    assert result.error is not None
    # apprise's own deadline (0.75 s here) usually reports first; the 1 s bound is the backstop
    assert "did not finish within" in result.error
    assert elapsed < 1.5


def test_notify_check_reports_a_bad_apprise_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "routing.yaml"
    channel = {"type": "apprise", "urls_file": str(tmp_path / "urls")}
    (tmp_path / "urls").write_text("json://127.0.0.1:9/x\nnosuchservice://secret-token@host\n")
    path.write_text(yaml.safe_dump({"channels": {"push": channel}, "routes": [{"name": "all", "channels": ["push"]}]}))
    result = CliRunner().invoke(main, ["notify", "check", str(path)])
    assert result.exit_code == 1
    assert result.output == (
        f"{path}: channels.push: apprise URL #2 (scheme nosuchservice) is not a URL apprise can use\n"
    )
    assert CliRunner().invoke(main, ["notify", "check", "--no-secrets", str(path)]).exit_code == 0


def test_urls_split_like_apprise_keeping_commas_inside_a_url(tmp_path: Path) -> None:
    urls = tmp_path / "urls"
    urls.write_text("json://127.0.0.1:9/x, mailto://user:pass@example.com?to=a@example.com,b@example.com\n\n")
    channel = AppriseChannel.model_validate({"type": "apprise", "urls_file": str(urls)})
    assert channel.urls() == ["json://127.0.0.1:9/x", "mailto://user:pass@example.com?to=a@example.com,b@example.com"]


async def test_a_markdown_digest_links_each_alert(monkeypatch: pytest.MonkeyPatch) -> None:
    payload = digest_payload(3)
    with WebhookReceiver("unused") as receiver:
        assert (await send(json_url(receiver), payload, monkeypatch, format="markdown")).ok
        [request] = receiver.seen()
    message = request.body["message"]
    assert request.body["type"] == "info"
    for item in payload["items"]:
        line = r"- [WARNING failed\-login\-burst on web\-1: Failed login burst \(new, 3 occurrences\)]"
        assert f"{line}({item['alert_url']})" in message
    assert "more" not in message
