"""A distributed deployment configured as compose and Kubernetes configure it: each service accepts only
named tokens with the scopes it needs, and the dashboard triages through its delegating token, so the
history names the signed-in user via the dashboard."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from auditflow.services.dashboard import user_entry
from tests.e2e.stack import Stack

INGEST = "ingest-token-0123456789abcdef"
OPERATOR = "operator-token-0123456789abcdef"
DASHBOARD = "dashboard-token-0123456789abcdef"
PASSWORD = "a-long-test-password"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack.create(tmp_path)
    try:
        yield stack
    finally:
        stack.destroy()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def test_least_privilege_tokens_and_the_delegated_history(stack: Stack) -> None:
    stack.migrate()
    ingest = stack.serve("generator", AUDITFLOW_API_TOKENS=f"ingest:ingest:{INGEST},operator:read+admin:{OPERATOR}")
    stack.serve("analysis", AUDITFLOW_API_TOKENS=f"operator:read+admin:{OPERATOR}")
    notification = stack.serve(
        "notification",
        AUDITFLOW_API_TOKENS=f"dashboard:read+triage+delegate:{DASHBOARD},operator:read+triage+admin:{OPERATOR}",
    )
    dashboard = stack.serve(
        "dashboard",
        AUDITFLOW_API_TOKENS=f"operator:admin:{OPERATOR}",
        AUDITFLOW_ALERTS_API_URL=notification.url,
        AUDITFLOW_ALERTS_API_TOKEN=DASHBOARD,
        AUDITFLOW_READINESS_API_URL=notification.url,
        AUDITFLOW_DASHBOARD_USERS=user_entry("ana", "analyst", PASSWORD),
        AUDITFLOW_SESSION_SECRET="dashboard-session-secret-0123456789",
    )
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    event = {"event_type": "file_modified", "server_hostname": "scope-host", "details": {"resource": "/etc/shadow"}}
    assert httpx.post(f"{ingest.url}/api/v1/events", json=event, headers=operator, timeout=10).status_code == 403
    answer = httpx.post(f"{ingest.url}/api/v1/events", json=event, headers={"Authorization": f"Bearer {INGEST}"})
    assert answer.status_code == 202, answer.text
    # The producer's token is unknown where alerts are served.
    alerts = f"{notification.url}/api/v1/alerts"
    assert httpx.get(alerts, headers={"Authorization": f"Bearer {INGEST}"}, timeout=10).status_code == 401
    deadline = time.monotonic() + 30
    items: list[dict[str, str]] = []
    while not items and time.monotonic() < deadline:
        items = httpx.get(alerts, params={"server_hostname": "scope-host"}, headers=operator, timeout=10).json()[
            "items"
        ]
        time.sleep(0.2)
    [alert] = items
    with httpx.Client(base_url=dashboard.url, timeout=10, follow_redirects=True) as browser:
        login = browser.get("/login")
        credentials = {"csrf_token": _csrf(login.text), "next": "/", "username": "ana", "password": PASSWORD}
        assert browser.post("/login", data=credentials).status_code == 200
        detail = browser.get(f"/alerts/{alert['alert_id']}")
        change = {"csrf_token": _csrf(detail.text), "status": "acknowledged", "note": "mine"}
        saved = browser.post(f"/alerts/{alert['alert_id']}", data=change)
        assert saved.status_code == 200, saved.text
        assert "ana via dashboard" in saved.text
    stored = httpx.get(f"{alerts}/{alert['alert_id']}", headers=operator, timeout=10).json()
    assert [(h["actor"], h["to_status"]) for h in stored["history"]] == [("ana via dashboard", "acknowledged")]
    dashboard.terminate()
