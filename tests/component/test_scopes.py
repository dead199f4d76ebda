"""Token scopes on every route: the operations are read off the embedded process's OpenAPI document
(a superset of every service's routes), so a new route that is missing from the scope table, or that
lets a token without its scope through, fails here. Also: the acting user and the history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from auditflow.api.openapi import build_spec
from auditflow.app import create_app
from auditflow.config import load_settings
from auditflow.runtime import Runtime
from auditflow.security import Scope

# The policy: which scope each operation needs. Reviewed by hand on purpose.
SCOPE_OF: dict[tuple[str, str], Scope] = {
    ("POST", "/api/v1/events"): Scope.INGEST,
    ("GET", "/api/v1/alerts"): Scope.READ,
    ("GET", "/api/v1/alerts/stats"): Scope.READ,
    ("GET", "/api/v1/alerts/{alert_id}"): Scope.READ,
    ("PATCH", "/api/v1/alerts/{alert_id}"): Scope.TRIAGE,
    ("GET", "/api/v1/alerts/{alert_id}/deliveries"): Scope.READ,
    ("GET", "/api/v1/rules"): Scope.READ,
    ("GET", "/api/v1/generator"): Scope.READ,
    ("PUT", "/api/v1/generator"): Scope.ADMIN,
    ("GET", "/api/v1/admin/log-level"): Scope.ADMIN,
    ("PUT", "/api/v1/admin/log-level"): Scope.ADMIN,
    ("GET", "/api/v1/dead-letters"): Scope.READ,
    ("POST", "/api/v1/dead-letters/replay"): Scope.ADMIN,
    ("POST", "/api/v1/dead-letters/purge"): Scope.ADMIN,
    ("GET", "/api/v1/channels"): Scope.READ,
    ("GET", "/api/v1/channels/{name}"): Scope.READ,
    ("POST", "/api/v1/channels/{name}/test"): Scope.ADMIN,
}
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}

# One token per scope, and the dashboard's combination.
TOKENS = {
    "ingest-bot": ({Scope.INGEST}, "ingest-bot-secret-0123456789"),
    "reader": ({Scope.READ}, "reader-secret-0123456789"),
    "triager": ({Scope.TRIAGE}, "triager-secret-0123456789"),
    "ops": ({Scope.ADMIN}, "ops-secret-0123456789abc"),
    "proxy": ({Scope.DELEGATE}, "proxy-secret-0123456789"),
    "dashboard": ({Scope.READ, Scope.TRIAGE, Scope.DELEGATE}, "dashboard-secret-0123456789"),
}
SETTING = ",".join(f"{name}:{'+'.join(sorted(scopes))}:{secret}" for name, (scopes, secret) in TOKENS.items())
SOME_ALERT = "00000000-0000-4000-8000-000000000000"


def operations() -> list[tuple[str, str]]:
    spec = build_spec()
    return sorted((method.upper(), path) for path, item in spec["paths"].items() for method in item)


OPERATIONS = operations()


def bearer(name: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name][1]}", **extra}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = load_settings(data_dir=tmp_path, generator_rate=0, api_tokens=SETTING)
    runtime = Runtime(settings, "run")
    app = create_app(runtime, settings.api_tokens, manage_lifecycle=False)
    await runtime.start()
    await runtime.wait_ready()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            yield client
    finally:
        await runtime.aclose()


def test_every_operation_is_public_or_has_a_scope() -> None:
    assert set(OPERATIONS) == set(SCOPE_OF) | PUBLIC


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
async def test_each_route_admits_exactly_the_tokens_with_its_scope(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    url = path.replace("{alert_id}", SOME_ALERT).replace("{name}", "soc")
    if (method, path) in PUBLIC:
        assert (await client.request(method, url)).status_code == 200
        return
    needed = SCOPE_OF.get((method, path))
    assert needed is not None, f"{method} {path} has no scope in the policy table"
    spec = build_spec()["paths"][path][method.lower()]
    assert spec["x-auditflow-scopes"] == [needed.value]
    anonymous = await client.request(method, url)
    assert anonymous.status_code == 401
    assert (await client.request(method, url, headers={"Authorization": "Bearer not-a-token"})).status_code == 401
    for name, (scopes, _) in TOKENS.items():
        # No body: a request that passes the scope check stops at validation (422) or finds nothing
        # (404), so nothing changes while every route is tried.
        answer = await client.request(method, url, headers=bearer(name))
        if needed in scopes:
            assert answer.status_code not in (401, 403), (name, answer.text)
        else:
            assert answer.status_code == 403, (name, answer.text)
            assert answer.json()["detail"] == f"token {name!r} lacks the {needed.value!r} scope this request needs"


async def _one_alert(client: httpx.AsyncClient) -> str:
    event = {"event_type": "file_modified", "details": {"resource": "/etc/passwd"}}
    assert (await client.post("/api/v1/events", json=event, headers=bearer("ingest-bot"))).status_code == 202
    for _ in range(200):
        items: list[dict[str, Any]] = (await client.get("/api/v1/alerts", headers=bearer("reader"))).json()["items"]
        if items:
            return str(items[0]["alert_id"])
        await __import__("asyncio").sleep(0.02)
    raise AssertionError("no alert appeared")


async def test_only_a_delegating_token_may_name_the_acting_user(client: httpx.AsyncClient) -> None:
    alert = await _one_alert(client)
    url = f"/api/v1/alerts/{alert}"
    refused = await client.patch(
        url, json={"status": "acknowledged"}, headers=bearer("triager", **{"X-AuditFlow-Actor": "mallory"})
    )
    assert refused.status_code == 403
    assert "lacks the 'delegate' scope needed to name an acting user in X-AuditFlow-Actor" in refused.json()["detail"]
    # Refused before anything was read or written, even on a read.
    assert (await client.get(url, headers=bearer("reader", **{"X-AuditFlow-Actor": "x"}))).status_code == 403
    own = await client.patch(url, json={"status": "acknowledged"}, headers=bearer("triager"))
    assert own.status_code == 200, own.text
    delegated = await client.patch(
        url, json={"status": "resolved"}, headers=bearer("dashboard", **{"X-AuditFlow-Actor": "alice"})
    )
    assert delegated.status_code == 200, delegated.text
    assert [h["actor"] for h in delegated.json()["history"]] == ["triager", "alice via dashboard"]
