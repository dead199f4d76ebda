"""The Slack channel against a local receiver: the Block Kit message for every payload shape, every
documented Block Kit limit held with absurd values and a digest of 200 alerts, mrkdwn escaping,
429 with Retry-After honoured by the dispatcher, Slack's error body in the error, and the webhook
URL (a secret) kept out of errors."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import yaml

from auditflow.backends.store.sql import SqlAlertStore
from auditflow.errors import ConfigError
from auditflow.notify.channels import SendResult, build_sender
from auditflow.notify.dispatcher import Dispatcher
from auditflow.notify.http import HttpClient
from auditflow.notify.outbox import OutboxWriter, list_deliveries
from auditflow.notify.routing import Routing, SlackChannel, load_routing
from auditflow.notify.slack import slack_message
from tests.factories import make_alert
from tests.notify.conftest import alert_payload, digest_payload, sample_test_payload
from tests.notify.receiver import Answer, WebhookReceiver

URL_ENV = "AUDITFLOW_TEST_SLACK_URL"


def slack_channel(**fields: Any) -> dict[str, Any]:
    return {"type": "slack", "url_env": URL_ENV, "timeout": 1, **fields}


async def send(url: str, payload: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> SendResult:
    monkeypatch.setenv(URL_ENV, url)
    async with HttpClient() as client:
        sender = build_sender(SlackChannel.model_validate(slack_channel()), client)
        return await sender.send(uuid4(), payload["event"], payload)


def texts(value: Any) -> list[str]:
    """Every `text` string anywhere in a message."""
    if isinstance(value, dict):
        found = [value["text"]] if isinstance(value.get("text"), str) else []
        return found + [text for item in value.values() for text in texts(item)]
    if isinstance(value, list):
        return [text for item in value for text in texts(item)]
    return []


def check_limits(message: dict[str, Any]) -> None:
    """Block Kit's documented limits for what this channel sends."""
    blocks = message["blocks"]
    assert 1 <= len(blocks) <= 50
    assert 0 < len(message["text"]) <= 3000
    for block in blocks:
        kind = block["type"]
        if kind == "header":
            assert block["text"]["type"] == "plain_text"
            assert 0 < len(block["text"]["text"]) <= 150
        elif kind == "section":
            if "text" in block:
                assert 0 < len(block["text"]["text"]) <= 3000
            if "fields" in block:
                assert 0 < len(block["fields"]) <= 10
                assert all(0 < len(field["text"]) <= 2000 for field in block["fields"])
        elif kind == "actions":
            for button in block["elements"]:
                assert 0 < len(button["text"]["text"]) <= 75
                assert 0 < len(button["url"]) <= 3000
        elif kind == "context":
            assert 0 < len(block["elements"]) <= 10
            assert all(0 < len(element["text"]) <= 3000 for element in block["elements"])
        else:
            raise AssertionError(f"unexpected block type {kind}")


async def test_a_new_alert_as_block_kit(monkeypatch: pytest.MonkeyPatch) -> None:
    payload = alert_payload(
        severity="CRITICAL",
        rule_id="ssh-brute-force",
        rule_name="SSH brute force",
        description="40 failed logins for <!channel> & root",
        server_hostname="web-1",
        user_id="root",
        occurrences=40,
    )
    with WebhookReceiver("unused") as receiver:
        result = await send(receiver.url, payload, monkeypatch)
        [request] = receiver.seen()
    assert result == SendResult(True)
    message = request.body
    check_limits(message)
    assert message["text"] == "CRITICAL ssh-brute-force on web-1 (new)"
    header, intro, facts, actions, context = message["blocks"]
    assert header["text"]["text"] == "New: CRITICAL SSH brute force"
    # Slack's control characters are escaped: the description cannot mention @channel.
    assert intro["text"]["text"] == "A new alert was raised.\n40 failed logins for &lt;!channel&gt; &amp; root"
    fields = {field["text"].split("\n")[0]: field["text"].split("\n", 1)[1] for field in facts["fields"]}
    assert fields == {
        "*Rule id*": "ssh-brute-force",
        "*Group*": "user_id=alice, server_hostname=web-1",
        "*Host*": "web-1",
        "*User*": "root",
        "*Occurrences*": "40",
        "*First seen*": payload["alert"]["first_seen"],
        "*Last seen*": payload["alert"]["last_seen"],
        "*Status*": "open",
    }
    [button] = actions["elements"]
    assert button["url"] == payload["alert_url"]
    assert button["text"]["text"] == "Open in AuditFlow"
    assert context["elements"][0]["text"].startswith("Route all · delivery ")


def test_every_event_renders(monkeypatch: pytest.MonkeyPatch) -> None:
    escalation = alert_payload("escalation", occurrences=100)
    escalation["previous_occurrences"] = 9
    message = slack_message(uuid4(), escalation)
    check_limits(message)
    assert message["blocks"][0]["text"]["text"].startswith("Escalation: WARNING")
    assert "grew from 9 to 100 occurrences" in message["blocks"][1]["text"]["text"]
    for event, word in [("reopened", "Reopened"), ("resolved", "Resolved")]:
        message = slack_message(uuid4(), alert_payload(event))
        check_limits(message)
        assert message["blocks"][0]["text"]["text"].startswith(f"{word}: ")
    test = slack_message(uuid4(), sample_test_payload())
    check_limits(test)
    assert test["blocks"][0]["text"]["text"] == "Test: INFO AuditFlow test notification"
    assert "nothing happened" in test["blocks"][1]["text"]["text"]
    assert "actions" not in [block["type"] for block in test["blocks"]]  # no alert to link to


async def test_absurd_values_stay_within_every_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # Longer than the alert model allows: the channel must hold whatever a payload carries.
    payload = alert_payload(url="https://auditflow.example/" + "a" * 2900)
    payload["alert"].update(
        rule_id="r" * 5000,
        rule_name="N" * 5000,
        description="<&>" * 4000,  # every character grows when escaped
        server_hostname="h" * 5000,
        user_id="u" * 5000,
        group={f"k{i}": "v" * 3000 for i in range(20)},
        status="s" * 5000,
    )
    with WebhookReceiver("unused") as receiver:
        assert (await send(receiver.url, payload, monkeypatch)).ok
        [request] = receiver.seen()
    message = request.body
    check_limits(message)
    assert message["blocks"][0]["text"]["text"].endswith("…")
    intro = message["blocks"][1]["text"]["text"]
    assert len(intro) <= 3000
    assert intro.endswith("&gt;…") or intro.endswith("&amp;…") or intro.endswith("&lt;…")  # no entity cut in half
    [button] = message["blocks"][3]["elements"]
    assert button["url"] == payload["alert_url"]  # 2,926 characters: within the limit, kept whole
    too_long = alert_payload(url="https://auditflow.example/" + "a" * 3000)
    assert "actions" not in [block["type"] for block in slack_message(uuid4(), too_long)["blocks"]]


async def test_a_digest_of_200_alerts_lists_20_and_counts_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    payload = digest_payload(200)
    for item in payload["items"]:
        item["alert"].update(rule_name="Long name " * 100, description="x" * 10000)
    with WebhookReceiver("unused") as receiver:
        assert (await send(receiver.url, payload, monkeypatch)).ok
        [request] = receiver.seen()
    message = request.body
    check_limits(message)
    assert message["text"] == "Digest: 200 alert changes (route all)"
    body = "\n".join(texts(message))
    assert body.count("• <https://auditflow.example/alerts/") == 20
    assert "and 180 more" in body
    assert "Alert changes from 2026-12-02T17:00:00Z to 2026-12-02T18:00:00Z." in body


async def test_slack_errors_are_reported_with_their_body(monkeypatch: pytest.MonkeyPatch) -> None:
    def plan(_number: int, _key: str) -> Answer:
        return Answer(400, body=b"invalid_payload")

    with WebhookReceiver("unused", plan) as receiver:
        result = await send(receiver.url, alert_payload(), monkeypatch)
    assert result == SendResult(False, "HTTP 400: invalid_payload")


async def test_the_webhook_url_stays_out_of_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    result = await send("http://127.0.0.1:9/services/T000/B000/s3cr3t-token", alert_payload(), monkeypatch)
    assert not result.ok
    assert result.error is not None
    assert result.error.startswith("ConnectError")
    assert "s3cr3t-token" not in result.error


async def test_429_with_retry_after_is_honoured(sqlite_store: SqlAlertStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def plan(number: int, _key: str) -> Answer:
        return Answer(429, (("Retry-After", "1"),), body=b"rate_limited") if number == 1 else Answer(body=b"ok")

    with WebhookReceiver("unused", plan) as receiver:
        monkeypatch.setenv(URL_ENV, receiver.url)
        routing = Routing.model_validate(
            {
                "channels": {"chat": slack_channel()},
                "routes": [{"name": "all", "channels": ["chat"]}],
                "delivery": {"initial_backoff": 0.05, "max_backoff": 5, "poll_interval": 0.05},
            }
        )
        sqlite_store.transition_hook = OutboxWriter(routing)
        alert = make_alert()
        await sqlite_store.upsert_alerts([alert])
        dispatcher = Dispatcher(sqlite_store, routing)
        try:
            before = time.time()
            await dispatcher.run_once()
            [waiting] = await list_deliveries(sqlite_store, alert.alert_id)
            assert waiting.status == "pending"
            assert waiting.last_error == "HTTP 429: rate_limited"
            assert waiting.next_attempt_at is not None
            assert waiting.next_attempt_at.timestamp() >= before + 0.95  # not the 50 ms back-off
            assert await dispatcher.run_once() == 0  # not due yet
            while time.time() < waiting.next_attempt_at.timestamp():
                await dispatcher.run_once()
                await asyncio.sleep(0.05)
            await dispatcher.run_once()
        finally:
            await dispatcher.aclose()
        first, second = receiver.seen()
    [delivery] = await list_deliveries(sqlite_store, alert.alert_id)
    assert (delivery.status, delivery.attempts) == ("sent", 2)
    assert first.raw == second.raw  # the same message on every attempt


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"url_env": None},
            "channels.chat: Value error, give exactly one of url_env or url_file (the incoming webhook URL)",
        ),
        (
            {"url_file": "/run/secrets/slack"},
            "channels.chat: Value error, give exactly one of url_env or url_file (the incoming webhook URL)",
        ),
        ({"url": "https://hooks.slack.com/services/x"}, "channels.chat.url: Extra inputs are not permitted"),
    ],
)
def test_the_url_is_a_secret_from_a_variable_or_a_file(tmp_path: Path, fields: dict[str, Any], message: str) -> None:
    path = tmp_path / "routing.yaml"
    document = {"channels": {"chat": slack_channel(**fields)}, "routes": [{"name": "all", "channels": ["chat"]}]}
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError) as error:
        load_routing(path, resolve_secrets=False)
    assert str(error.value) == f"{path}: {message}"


def test_the_url_must_be_set_and_look_like_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(
        yaml.safe_dump({"channels": {"chat": slack_channel()}, "routes": [{"name": "all", "channels": ["chat"]}]})
    )
    monkeypatch.delenv(URL_ENV, raising=False)
    with pytest.raises(ConfigError, match=f"channels.chat: environment variable {URL_ENV} is empty or unset"):
        load_routing(path)
    monkeypatch.setenv(URL_ENV, "hooks.slack.com/services/x")
    with pytest.raises(ConfigError, match=f"channels.chat: environment variable {URL_ENV} does not hold an http"):
        load_routing(path)
    secret_file = tmp_path / "slack-url"
    secret_file.write_text("https://hooks.slack.com/services/T0/B0/x\n")
    channel = SlackChannel.model_validate({"type": "slack", "url_file": str(secret_file)})
    assert channel.webhook_url().get_secret_value() == "https://hooks.slack.com/services/T0/B0/x"


async def test_redirects_are_not_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    def plan(_number: int, _key: str) -> Answer:
        return Answer(302, (("Location", "http://127.0.0.1:9/elsewhere"),))

    with WebhookReceiver("unused", plan) as receiver:
        result = await send(receiver.url, alert_payload(), monkeypatch)
        assert len(receiver.seen()) == 1
    assert result == SendResult(False, "HTTP 302 redirect to http://127.0.0.1:9/elsewhere not followed")
