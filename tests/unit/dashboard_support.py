"""What the dashboard unit tests share: signed-in clients, users with cheap password hashes, and a
source over the real store that records the queries the routes built."""

from __future__ import annotations

import re

import httpx
from argon2 import PasswordHasher

from auditflow.backends.store.sql import SqlAlertStore
from auditflow.model.alert import AlertPage, AlertQuery
from auditflow.model.event import Severity
from auditflow.model.status import DependencyStatus, Readiness, RuleInfo, RulesStatus
from auditflow.services.dashboard import LocalAlertSource

XSS_USER = "<img src=x onerror=alert(1)>"
XSS_DETAIL = "<script>alert(1)</script>"
PASSWORD = "correct horse battery"
# Cheap argon2 parameters keep the tests fast; verification reads the parameters from the hash.
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
ENTRIES = [f"ana:analyst:{CHEAP.hash(PASSWORD)}", f"vic:viewer:{CHEAP.hash(PASSWORD)}"]
RULES = RulesStatus(
    rules=[
        RuleInfo(
            id="failed-login-burst",
            name="Failed login burst",
            description="3 failures in 60 s",
            kind="threshold",
            severity=Severity.WARNING,
            tags=["auth"],
            enabled=True,
            suppress_for_seconds=300,
            window_seconds=60,
            group_by=["user_id", "server_hostname"],
        )
    ],
    version="abc123",
    last_error="rules/bad.yaml: rule x: field window: required",
)
READINESS = Readiness(
    status="not_ready",
    service="auditflow",
    dependencies=[
        DependencyStatus(name="store", status="up", critical=True, detail="sqlite"),
        DependencyStatus(
            name="broker", status="down", critical=True, last_error="connection refused", impact="no new alerts"
        ),
    ],
)


class RecordingSource(LocalAlertSource):
    """The embedded-mode source over the real store, remembering the queries the routes built."""

    def __init__(self, store: SqlAlertStore) -> None:
        super().__init__(store, lambda: RULES, self._readiness)
        self.queries: list[AlertQuery] = []

    @staticmethod
    async def _readiness() -> Readiness:
        return READINESS

    async def list_alerts(self, query: AlertQuery) -> AlertPage:
        self.queries.append(query)
        return await super().list_alerts(query)


async def sign_in(client: httpx.AsyncClient, user: str = "ana", password: str = PASSWORD) -> httpx.Response:
    page = await client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    form = {"username": user, "password": password, "csrf_token": token.group(1), "next": "/alerts"}
    return await client.post("/login", data=form)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match is not None
    return match.group(1)
