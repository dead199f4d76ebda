"""The senders' HTTP client: the proxy variables of the environment apply, as they did with httpx."""

from __future__ import annotations

import uuid

import pytest

from auditflow.notify.http import HttpClient
from auditflow.notify.routing import WebhookChannel
from auditflow.notify.webhook import WebhookSender
from tests.notify.conftest import SECRET, SECRET_ENV, alert_payload
from tests.notify.receiver import WebhookReceiver

HOOK = "http://hooks.invalid/hook"  # resolves nowhere: only a proxy can carry it


def _clear_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


async def _send() -> tuple[str, str | None]:
    channel = WebhookChannel.model_validate({"type": "webhook", "url": HOOK, "secret_env": SECRET_ENV, "timeout": 5})
    delivery_id = uuid.uuid4()
    async with HttpClient() as client:
        result = await WebhookSender(channel, client).send(delivery_id, "new", alert_payload())
    return str(delivery_id), result.error


async def test_http_proxy_from_the_environment_carries_the_delivery(
    secret_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:  # secret_env: sets SECRET_ENV
    _clear_proxies(monkeypatch)
    with WebhookReceiver(SECRET) as proxy:  # answers the proxied request itself
        monkeypatch.setenv("HTTP_PROXY", proxy.url.removesuffix("/hook"))
        key, error = await _send()
        assert error is None
        [request] = proxy.seen()
    assert (request.key, request.signature_ok) == (key, True)


async def test_no_proxy_sends_directly(secret_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_proxies(monkeypatch)
    with WebhookReceiver(SECRET) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url.removesuffix("/hook"))
        monkeypatch.setenv("NO_PROXY", "hooks.invalid")
        _, error = await _send()
        assert proxy.seen() == []
    assert error is not None
    assert error.startswith("ConnectError: ")
