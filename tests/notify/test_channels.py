"""Every channel type together: one routing file with a webhook, a Slack and an email channel, one
alert, one message on each and every row sent; the sender factory; `auditflow notify check` on the
new types."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from auditflow.backends.store.sql import SqlAlertStore
from auditflow.cli import main
from auditflow.notify.channels import build_sender
from auditflow.notify.dispatcher import Dispatcher
from auditflow.notify.http import HttpClient
from auditflow.notify.outbox import OutboxWriter, list_deliveries
from auditflow.notify.routing import load_routing
from auditflow.notify.slack import SlackSender
from auditflow.notify.smtp import EmailSender
from auditflow.notify.webhook import WebhookSender
from tests.factories import make_alert
from tests.notify.conftest import SECRET, SECRET_ENV
from tests.notify.receiver import WebhookReceiver
from tests.notify.smtpserver import SmtpServer

SLACK_ENV = "AUDITFLOW_TEST_SLACK_URL"


def routing_file(tmp_path: Path, webhook: str, smtp_port: int) -> Path:
    document: dict[str, Any] = {
        "dashboard_url": "https://auditflow.example",
        "channels": {
            "hook": {"type": "webhook", "url": webhook, "secret_env": SECRET_ENV, "timeout": 2},
            "chat": {"type": "slack", "url_env": SLACK_ENV, "timeout": 2},
            "mail": {
                "type": "email",
                "host": "127.0.0.1",
                "port": smtp_port,
                "security": "none",
                "from": "AuditFlow <alerts@auditflow.example>",
                "to": ["soc@example.com"],
                "timeout": 2,
            },
        },
        "routes": [{"name": "everything", "channels": ["hook", "chat", "mail"]}],
        "delivery": {"initial_backoff": 0.05, "max_backoff": 0.2, "poll_interval": 0.05},
    }
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


async def test_one_alert_one_message_on_every_channel(
    sqlite_store: SqlAlertStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    with WebhookReceiver(SECRET) as hook, WebhookReceiver("unused") as chat, SmtpServer() as mail:
        monkeypatch.setenv(SLACK_ENV, chat.url)
        routing = load_routing(routing_file(tmp_path, hook.url, mail.port))
        sqlite_store.transition_hook = OutboxWriter(routing)
        alert = make_alert(severity="ERROR")
        await sqlite_store.upsert_alerts([alert])
        dispatcher = Dispatcher(sqlite_store, routing)
        await dispatcher.start()
        try:
            async with asyncio.timeout(20):
                while {d.status for d in await list_deliveries(sqlite_store, alert.alert_id)} != {"sent"}:
                    await asyncio.sleep(0.05)
        finally:
            await dispatcher.aclose()
        [signed], [slack], [email] = hook.seen(), chat.seen(), mail.messages()
    deliveries = {d.channel: d for d in await list_deliveries(sqlite_store, alert.alert_id)}
    assert sorted(deliveries) == ["chat", "hook", "mail"]
    assert all((d.status, d.attempts) == ("sent", 1) for d in deliveries.values())
    assert signed.signature_ok
    assert signed.key == str(deliveries["hook"].delivery_id)
    assert slack.body["text"] == "ERROR failed-login-burst on web-1 (new)"
    alert_url = f"https://auditflow.example/alerts/{alert.alert_id}"
    assert slack.body["blocks"][3]["elements"][0]["url"] == alert_url
    assert email.message["X-AuditFlow-Delivery"] == str(deliveries["mail"].delivery_id)
    assert email.message["Subject"] == "[AuditFlow] ERROR failed-login-burst on web-1 (new)"


async def test_the_factory_builds_the_sender_of_each_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setenv(SLACK_ENV, "https://hooks.slack.com/services/T0/B0/x")
    routing = load_routing(routing_file(tmp_path, "https://hooks.example/x", 2525))
    async with HttpClient() as client:
        senders = {name: build_sender(channel, client) for name, channel in routing.channels.items()}
    assert isinstance(senders["hook"], WebhookSender)
    assert isinstance(senders["chat"], SlackSender)
    assert isinstance(senders["mail"], EmailSender)


def test_notify_check_on_every_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = routing_file(tmp_path, "https://hooks.example/x", 2525)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.delenv(SLACK_ENV, raising=False)
    runner = CliRunner()
    result = runner.invoke(main, ["notify", "check", str(path)])
    assert result.exit_code == 1
    assert f"{path}: channels.chat: environment variable {SLACK_ENV} is empty or unset" in result.output
    result = runner.invoke(main, ["notify", "check", "--no-secrets", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output == f"ok: {path}: 3 channel(s), 1 route(s)\n"
    monkeypatch.setenv(SLACK_ENV, "https://hooks.slack.com/services/T0/B0/x")
    assert runner.invoke(main, ["notify", "check", str(path)]).exit_code == 0
    document = yaml.safe_load(path.read_text())
    document["channels"]["mail"]["security"] = "none"
    document["channels"]["mail"]["host"] = "smtp.example.com"
    document["channels"]["pager"] = {"type": "sms", "to": "+100"}
    path.write_text(yaml.safe_dump(document))
    result = runner.invoke(main, ["notify", "check", "--no-secrets", str(path)])
    assert result.exit_code == 1
    assert "channels.mail: Value error, security: none sends the alert and the password in clear text" in result.output
    assert "channels.pager: Input tag 'sms' found using 'type' does not match any of the expected tags" in result.output
