"""Forwarded headers are trusted only from configured proxy addresses or ranges: `*` is refused, since
a client that reaches a pod directly (a LoadBalancer Service) could then claim any address and https."""

from __future__ import annotations

from typing import Any

import pytest
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from auditflow.config import load_settings
from auditflow.errors import ConfigError


@pytest.mark.parametrize("value", ["*", "127.0.0.1,*", "ingress-nginx", "10.0.0.0/33"])
def test_wildcards_and_non_addresses_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="forwarded_allow_ips"):
        load_settings(forwarded_allow_ips=value)


async def _client_seen(trusted: str, peer: str, headers: list[tuple[bytes, bytes]]) -> tuple[Any, str]:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(client=scope["client"], scheme=scope["scheme"])

    middleware = ProxyHeadersMiddleware(app, trusted_hosts=trusted)
    scope = {"type": "http", "client": (peer, 5000), "scheme": "http", "headers": headers}
    await middleware(scope, None, None)  # type: ignore[arg-type]
    return seen["client"], seen["scheme"]


async def test_only_peers_inside_the_ranges_may_forward() -> None:
    settings = load_settings(forwarded_allow_ips="10.244.0.0/16, 10.42.0.0/16")
    headers = [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-proto", b"https")]
    client, scheme = await _client_seen(settings.forwarded_allow_ips, "10.244.3.9", headers)
    assert (client[0], scheme) == ("203.0.113.7", "https")
    client, scheme = await _client_seen(settings.forwarded_allow_ips, "192.168.1.20", headers)
    assert (client[0], scheme) == ("192.168.1.20", "http"), "a direct client cannot spoof its address"
