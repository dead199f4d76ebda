"""The email channel against a real SMTP server (aiosmtpd) on loopback: STARTTLS with AUTH and a
private CA, implicit TLS, both parts of the message with every alert value escaped in the HTML, the
Message-ID that stays the same on a re-send, 451 retried by the dispatcher, and the server's answer
in the error when it refuses."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import yaml

from auditflow.backends.store.sql import SqlAlertStore
from auditflow.errors import ConfigError
from auditflow.notify.channels import build_sender
from auditflow.notify.dispatcher import Dispatcher
from auditflow.notify.http import HttpClient
from auditflow.notify.outbox import OutboxWriter, list_deliveries
from auditflow.notify.routing import EmailChannel, Routing, load_routing
from tests.factories import make_alert
from tests.notify.conftest import alert_payload, digest_payload, sample_test_payload
from tests.notify.smtpserver import PASSWORD, USERNAME, Certificate, SmtpServer, make_certificate

PASSWORD_ENV = "AUDITFLOW_TEST_SMTP_PASSWORD"
SCRIPT = "<script>alert('x')</script>"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    return PASSWORD


def email_channel(server: SmtpServer, **fields: Any) -> dict[str, Any]:
    return {
        "type": "email",
        "host": "127.0.0.1",
        "port": server.port,
        "from": "AuditFlow <alerts@auditflow.example>",
        "to": ["soc@example.com", "oncall@example.com"],
        "timeout": 20,  # generous: a loaded test machine must not turn a refusal into a timeout
        **fields,
    }


def channel(server: SmtpServer, **fields: Any) -> EmailChannel:
    return EmailChannel.model_validate(email_channel(server, **fields))


async def send(config: EmailChannel, payload: dict[str, Any], delivery_id: Any = None) -> Any:
    async with HttpClient() as client:
        sender = build_sender(config, client)
        return await sender.send(delivery_id or uuid4(), payload["event"], payload)


@pytest.fixture
def starttls(certificate: Certificate) -> Iterator[SmtpServer]:
    with SmtpServer(certificate=certificate, auth=True) as server:
        yield server


async def test_starttls_with_auth_sends_both_parts_with_the_values_escaped(
    starttls: SmtpServer, certificate: Certificate, password: str
) -> None:
    config = channel(starttls, username=USERNAME, password_env=PASSWORD_ENV, ca_file=str(certificate.cert))
    payload = alert_payload(
        severity="CRITICAL",
        rule_id="ssh-brute-force",
        rule_name="SSH brute force <b>",
        description=f"burst from 10.0.0.5 {SCRIPT}",
        server_hostname="web-1",
        user_id="root & co",
    )
    delivery_id = uuid4()
    result = await send(config, payload, delivery_id)
    assert result.ok, result.error
    [received] = starttls.messages()
    assert received.tls
    assert received.login == USERNAME
    assert received.sender == "alerts@auditflow.example"
    assert received.recipients == ["soc@example.com", "oncall@example.com"]
    message = received.message
    assert message["Subject"] == "[AuditFlow] CRITICAL ssh-brute-force on web-1 (new)"
    assert message["Message-ID"] == f"<{delivery_id}@auditflow.example>"
    assert message["X-AuditFlow-Delivery"] == str(delivery_id)
    assert message["X-AuditFlow-Event"] == "new"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    text_content, html_content = text.get_content(), html.get_content()
    assert SCRIPT in text_content  # plain text shows the value as it is
    assert "Host:        web-1" in text_content
    assert payload["alert_url"] in text_content
    assert "<script" not in html_content
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html_content
    assert "SSH brute force &lt;b&gt;" in html_content
    assert "root &amp; co" in html_content
    assert f'<a href="{payload["alert_url"]}">' in html_content


async def test_a_resend_carries_the_same_message_id(
    starttls: SmtpServer, certificate: Certificate, password: str
) -> None:
    config = channel(starttls, username=USERNAME, password_env=PASSWORD_ENV, ca_file=str(certificate.cert))
    delivery_id = uuid4()
    payload = alert_payload()
    assert (await send(config, payload, delivery_id)).ok
    assert (await send(config, payload, delivery_id)).ok
    first, second = starttls.messages()
    assert first.message["Message-ID"] == second.message["Message-ID"] == f"<{delivery_id}@auditflow.example>"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_implicit_tls(certificate: Certificate, password: str) -> None:
    with SmtpServer(certificate=certificate, implicit_tls=True, auth=True) as server:
        config = channel(
            server, security="tls", username=USERNAME, password_env=PASSWORD_ENV, ca_file=str(certificate.cert)
        )
        result = await send(config, alert_payload("resolved"))
        assert result.ok, result.error
        [received] = server.messages()
    assert received.tls
    assert received.login == USERNAME
    assert received.message["Subject"].endswith("(resolved)")


async def test_a_certificate_the_client_does_not_trust_is_refused(starttls: SmtpServer, password: str) -> None:
    config = channel(starttls, username=USERNAME, password_env=PASSWORD_ENV)  # no ca_file
    result = await send(config, alert_payload())
    assert not result.ok
    assert result.error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in result.error
    assert starttls.messages() == []


async def test_a_wrong_password_fails_with_the_server_answer(
    starttls: SmtpServer, certificate: Certificate, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    config = channel(starttls, username=USERNAME, password_env=PASSWORD_ENV, ca_file=str(certificate.cert))
    result = await send(config, alert_payload())
    assert not result.ok
    assert result.error is not None
    assert result.error.startswith("SMTP 535 (permanent): ")
    assert "Authentication credentials invalid" in result.error
    assert "wrong" not in result.error
    assert starttls.messages() == []


def client_sockets_to(port: int) -> list[socket.socket]:
    """The open sockets of this process connected to `port`."""
    found = []
    for candidate in gc.get_objects():
        if isinstance(candidate, socket.socket) and candidate.family == socket.AF_INET and candidate.fileno() != -1:
            with contextlib.suppress(OSError):
                if candidate.getpeername()[1] == port:
                    found.append(candidate)
    return found


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
@pytest.mark.parametrize("security", ["starttls", "tls"])
@pytest.mark.parametrize("password_env", [PASSWORD_ENV, "AUDITFLOW_TEST_SMTP_WRONG"])
async def test_the_connection_is_closed_when_a_send_over_tls_returns(
    certificate: Certificate, password: str, monkeypatch: pytest.MonkeyPatch, security: str, password_env: str
) -> None:
    """Over TLS the client's close only starts the close_notify exchange: a send returns once the socket
    is closed, so that a process ending its loop right after (`auditflow notify test`) leaves none open."""
    monkeypatch.setenv("AUDITFLOW_TEST_SMTP_WRONG", "wrong")
    with SmtpServer(certificate=certificate, implicit_tls=security == "tls", auth=True) as server:
        config = channel(
            server, security=security, username=USERNAME, password_env=password_env, ca_file=str(certificate.cert)
        )
        result = await send(config, alert_payload())
        assert result.ok == (password_env == PASSWORD_ENV), result.error
        assert client_sockets_to(server.port) == []


async def test_a_server_without_starttls_is_refused_when_starttls_is_asked(password: str) -> None:
    with SmtpServer() as server:
        result = await send(channel(server), alert_payload())
        assert server.messages() == []
    assert not result.ok
    assert result.error is not None
    assert "STARTTLS" in result.error


async def test_plain_smtp_to_localhost_and_every_payload_shape() -> None:
    with SmtpServer() as server:
        config = channel(server, security="none")
        digest = digest_payload(60, severity="ERROR")
        for payload in (alert_payload("escalation", occurrences=100), digest, sample_test_payload()):
            result = await send(config, payload)
            assert result.ok, result.error
        escalation, digest_mail, test_mail = (received.message for received in server.messages())
    assert escalation["Subject"].endswith("(escalation, 100 occurrences)")
    assert digest_mail["Subject"] == "[AuditFlow] Digest: 60 alert changes (route all)"
    digest_html = digest_mail.get_body(("html",))
    assert digest_html is not None
    content = digest_html.get_content()
    assert content.count("<li>") == 50
    assert "and 10 more" in content
    assert test_mail["Subject"].startswith("[AuditFlow] INFO auditflow-test")
    test_text = test_mail.get_body(("plain",))
    assert test_text is not None
    assert "nothing happened" in test_text.get_content()


async def test_a_temporary_refusal_is_retried_by_the_dispatcher(sqlite_store: SqlAlertStore) -> None:
    with SmtpServer(answer=lambda n: "451 4.3.0 Try again later" if n == 1 else None) as server:
        routing = Routing.model_validate(
            {
                "channels": {"mail": email_channel(server, security="none", timeout=2)},
                "routes": [{"name": "all", "channels": ["mail"]}],
                "delivery": {"initial_backoff": 0.05, "max_backoff": 0.1, "poll_interval": 0.05},
            }
        )
        sqlite_store.transition_hook = OutboxWriter(routing)
        alert = make_alert()
        await sqlite_store.upsert_alerts([alert])
        dispatcher = Dispatcher(sqlite_store, routing)
        try:
            await dispatcher.run_once()
            [first] = await list_deliveries(sqlite_store, alert.alert_id)
            assert first.status == "pending"
            assert first.last_error == "SMTP 451 (temporary): 4.3.0 Try again later"
            for _ in range(100):
                await asyncio.sleep(0.05)
                await dispatcher.run_once()
                [delivery] = await list_deliveries(sqlite_store, alert.alert_id)
                if delivery.status != "pending":
                    break
        finally:
            await dispatcher.aclose()
        [received] = server.messages()
    assert (delivery.status, delivery.attempts) == ("sent", 2)
    assert received.message["X-AuditFlow-Delivery"] == str(delivery.delivery_id)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"host": "mail.example.com", "security": "none"}, "only to localhost, or set allow_insecure: true"),
        ({"username": "u"}, "channels.mail: Value error, give exactly one of password_env or password_file"),
        ({"password_env": "X"}, "channels.mail: Value error, a password needs a username"),
        ({"from": "not an address"}, "from: 'not an address' is not an email address"),
        ({"to": ["soc@example.com\r\nBcc: x@y"]}, "channels.mail.to.0: String should match pattern"),
        ({"to": []}, "channels.mail.to: List should have at least 1 item"),
        ({"security": "ssl"}, "channels.mail.security: Input should be 'starttls', 'tls' or 'none'"),
        ({"timeout": 60}, "delivery.lease must be longer than channels.mail.timeout"),
    ],
)
def test_email_settings_are_checked(tmp_path: Path, fields: dict[str, Any], message: str) -> None:
    mail = {"type": "email", "host": "127.0.0.1", "from": "a@example.com", "to": ["b@example.com"], **fields}
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump({"channels": {"mail": mail}, "routes": [{"name": "all", "channels": ["mail"]}]}))
    with pytest.raises(ConfigError) as error:
        load_routing(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)


def test_insecure_smtp_elsewhere_needs_the_explicit_flag() -> None:
    base = {"type": "email", "from": "a@b.c", "to": ["d@e.f"]}
    config = EmailChannel.model_validate({**base, "host": "mail.internal", "security": "none", "allow_insecure": True})
    assert config.smtp_port == 25
    assert EmailChannel.model_validate({**base, "host": "h"}).smtp_port == 587
    assert EmailChannel.model_validate({**base, "host": "h", "security": "tls"}).smtp_port == 465


def test_an_unreadable_ca_file_is_a_config_error(tmp_path: Path) -> None:
    config = EmailChannel.model_validate(
        {"type": "email", "host": "h", "from": "a@b.c", "to": ["d@e.f"], "ca_file": str(tmp_path / "missing.pem")}
    )
    with pytest.raises(ConfigError, match=r"missing\.pem"):
        build_sender(config, HttpClient())
