"""Dashboard routes over an in-test alert source: access gate, sign-in, CSRF, roles, pages, escaping."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from pydantic import SecretStr

from auditflow.config import Settings
from auditflow.errors import BackendUnavailable, NotFound
from auditflow.model.alert import (
    AlertChange,
    AlertDetail,
    AlertPage,
    AlertQuery,
    AlertStats,
    AlertStatus,
    AlertSummary,
    AlertUpdate,
    CountItem,
    TimeBucket,
)
from auditflow.model.event import Event, Severity
from auditflow.model.status import DependencyStatus, Readiness, RuleInfo, RulesStatus
from auditflow.model.timeutil import to_millis, utcnow
from auditflow.services.dashboard import AlertSource, build_dashboard
from auditflow.services.dashboard.gate import CONTENT_SECURITY_POLICY

XSS_USER = "<img src=x onerror=alert(1)>"
XSS_DETAIL = "<script>alert(1)</script>"
PASSWORD = "correct horse battery"
# Cheap argon2 parameters keep the tests fast; verification reads the parameters from the hash.
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
ENTRIES = [f"ana:analyst:{CHEAP.hash(PASSWORD)}", f"vic:viewer:{CHEAP.hash(PASSWORD)}"]


def make_alert(
    *,
    rule_id: str = "failed-login-burst",
    severity: Severity = Severity.WARNING,
    user_id: str | None = "alice",
    host: str | None = "web-1",
    first_seen: datetime | None = None,
    details: dict[str, object] | None = None,
) -> AlertDetail:
    seen = first_seen or utcnow()
    event = Event(event_type="user_login", user_id=user_id, server_hostname=host, details=details or {}, timestamp=seen)
    return AlertDetail(
        alert_id=uuid4(),
        rule_id=rule_id,
        rule_name=f"Rule {rule_id}",
        rule_kind="threshold",
        severity=severity,
        status=AlertStatus.OPEN,
        description=f"{rule_id} for {user_id}",
        group={"user_id": user_id},
        user_id=user_id,
        server_hostname=host,
        first_seen=seen,
        last_seen=seen,
        occurrences=3,
        tags=["auth"],
        created_at=seen,
        updated_at=seen,
        event_ids=[event.event_id],
        events=[event],
        history=[],
    )


class FakeSource(AlertSource):
    """Alerts in a list, filtered and paginated like the store; `down` simulates an outage."""

    def __init__(self, alerts: list[AlertDetail] | None = None) -> None:
        self.alerts = {a.alert_id: a for a in alerts or []}
        self.down = False
        self.queries: list[AlertQuery] = []

    def add(self, alert: AlertDetail) -> None:
        self.alerts[alert.alert_id] = alert

    def _check(self) -> None:
        if self.down:
            raise BackendUnavailable("store down")

    async def list_alerts(self, query: AlertQuery) -> AlertPage:
        self._check()
        self.queries.append(query)
        items = sorted(self.alerts.values(), key=lambda a: (a.first_seen, str(a.alert_id)), reverse=True)

        def keep(a: AlertDetail) -> bool:
            text = (query.text or "").lower()
            return (
                (not query.severity or a.severity in query.severity)
                and (not query.status or a.status in query.status)
                and query.rule_id in (None, a.rule_id)
                and query.user_id in (None, a.user_id)
                and query.server_hostname in (None, a.server_hostname)
                and (query.since is None or a.first_seen >= query.since)
                and (query.until is None or a.first_seen < query.until)
                and (not text or text in f"{a.rule_name} {a.description} {a.user_id} {a.server_hostname}".lower())
            )

        items = [a for a in items if keep(a)]
        if query.cursor:
            ms, _, ident = query.cursor.partition(":")
            items = [a for a in items if (to_millis(a.first_seen), str(a.alert_id)) < (int(ms), ident)]
        page = items[: query.limit]
        more = len(items) > query.limit
        cursor = f"{to_millis(page[-1].first_seen)}:{page[-1].alert_id}" if more else None
        summaries = [AlertSummary.model_validate(a.model_dump(include=set(AlertSummary.model_fields))) for a in page]
        return AlertPage(items=summaries, next_cursor=cursor)

    async def get_alert(self, alert_id: UUID) -> AlertDetail:
        self._check()
        if alert_id not in self.alerts:
            raise NotFound(str(alert_id))
        return self.alerts[alert_id]

    async def update_alert(self, alert_id: UUID, update: AlertUpdate, actor: str) -> AlertDetail:
        alert = await self.get_alert(alert_id)
        change = AlertChange(
            at=utcnow(),
            actor=actor,
            from_status=alert.status if update.status else None,
            to_status=update.status,
            note=update.note,
        )
        changed = alert.model_copy(
            update={"status": update.status or alert.status, "history": [*alert.history, change]}
        )
        self.alerts[alert_id] = changed
        return changed

    async def stats(self, since: datetime | None, until: datetime | None, bucket_seconds: int) -> AlertStats:
        self._check()
        chosen = [a for a in self.alerts.values() if since is None or a.first_seen >= since]
        step = bucket_seconds * 1000
        buckets = Counter(to_millis(a.first_seen) // step * step for a in chosen)
        return AlertStats(
            total=len(chosen),
            by_severity=dict(Counter(str(a.severity) for a in chosen)),
            by_status=dict(Counter(str(a.status) for a in chosen)),
            by_rule=[CountItem(key=k, count=v) for k, v in Counter(a.rule_id for a in chosen).most_common()],
            top_users=[
                CountItem(key=k, count=v) for k, v in Counter(a.user_id for a in chosen if a.user_id).most_common()
            ],
            top_hosts=[
                CountItem(key=k, count=v)
                for k, v in Counter(a.server_hostname for a in chosen if a.server_hostname).most_common()
            ],
            buckets=[
                TimeBucket(start=datetime.fromtimestamp(k / 1000).astimezone(), count=v) for k, v in buckets.items()
            ],
            bucket_seconds=bucket_seconds,
        )

    async def rules(self) -> RulesStatus:
        self._check()
        rule = RuleInfo(
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
        return RulesStatus(rules=[rule], version="abc123", last_error="rules/bad.yaml: rule x: field window: required")

    async def readiness(self) -> Readiness:
        deps = [
            DependencyStatus(name="store", status="up", critical=True, detail="sqlite"),
            DependencyStatus(
                name="broker", status="down", critical=True, last_error="connection refused", impact="no new alerts"
            ),
        ]
        return Readiness(status="not_ready", service="auditflow", dependencies=deps)


@pytest.fixture
def source() -> FakeSource:
    now = utcnow()
    return FakeSource(
        [
            make_alert(severity=Severity.CRITICAL, user_id="root", first_seen=now - timedelta(minutes=5)),
            make_alert(
                rule_id="sensitive-file",
                severity=Severity.ERROR,
                user_id="bob",
                host="db-1",
                first_seen=now - timedelta(hours=2),
            ),
            make_alert(
                user_id=XSS_USER, host="web-2", first_seen=now - timedelta(hours=3), details={"note": XSS_DETAIL}
            ),
        ]
    )


@pytest.fixture
def app(tmp_path: Path, source: FakeSource) -> FastAPI:
    settings = Settings(data_dir=tmp_path, dashboard_users=[SecretStr(e) for e in ENTRIES])
    return build_dashboard(settings, source, poll_interval=0.01, stream_lifetime=0.05)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


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


@pytest.mark.parametrize("path", ["/", "/alerts", "/alerts/" + str(uuid4()), "/rules", "/health", "/nowhere"])
async def test_pages_redirect_to_login_without_a_session(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("path", ["/events/stream", "/overview/data.json"])
async def test_script_endpoints_answer_401_without_a_session(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path)).status_code == 401


async def test_a_forged_session_cookie_is_refused(client: httpx.AsyncClient) -> None:
    await sign_in(client)
    cookie = client.cookies["auditflow_session"]
    payload, signature = cookie.split(".")
    client.cookies.set("auditflow_session", payload + "." + signature[::-1])
    assert (await client.get("/alerts")).status_code == 303


async def test_login_page_and_static_assets_are_public(client: httpx.AsyncClient) -> None:
    login = await client.get("/login")
    assert login.status_code == 200
    assert login.headers["x-content-type-options"] == "nosniff"
    assert login.headers["referrer-policy"] == "same-origin"
    assert "httponly" in login.headers["set-cookie"].lower()
    css = await client.get("/static/dashboard.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")


async def test_sign_in_sets_a_hardened_cookie_and_goes_to_next(client: httpx.AsyncClient) -> None:
    response = await sign_in(client)
    assert response.status_code == 303
    assert response.headers["location"] == "/alerts"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("auditflow_session="))
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Secure" not in cookie
    assert (await client.get("/alerts")).status_code == 200


async def test_cookie_is_secure_behind_a_tls_proxy(client: httpx.AsyncClient) -> None:
    page = await client.get("/login", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in page.headers["set-cookie"]
    # The client keeps Secure cookies away from http://, as a browser would: hand it back ourselves.
    login_cookie = page.headers["set-cookie"].split(";")[0]
    form = {"username": "ana", "password": PASSWORD, "csrf_token": csrf_of(page.text)}
    headers = {"X-Forwarded-Proto": "https", "Cookie": login_cookie}
    response = await client.post("/login", data=form, headers=headers)
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("auditflow_session="))
    assert "Secure" in cookie


@pytest.mark.parametrize(("user", "password"), [("ana", "wrong"), ("nobody", PASSWORD)])
async def test_wrong_user_or_password_gives_one_generic_error(
    client: httpx.AsyncClient, user: str, password: str
) -> None:
    response = await sign_in(client, user, password)
    assert response.status_code == 401
    assert "Invalid username or password." in response.text
    assert "auditflow_session" not in client.cookies


async def test_failed_sign_ins_are_throttled(client: httpx.AsyncClient) -> None:
    for _ in range(5):
        assert (await sign_in(client, "ana", "wrong")).status_code == 401
    blocked = await sign_in(client, "ana", PASSWORD)
    assert blocked.status_code == 429
    assert "auditflow_session" not in client.cookies


async def test_sign_in_without_the_form_token_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/login", data={"username": "ana", "password": PASSWORD, "csrf_token": "forged"})
    assert response.status_code == 400
    assert "auditflow_session" not in client.cookies


async def test_next_never_leaves_the_site(client: httpx.AsyncClient) -> None:
    page = await client.get("/login")
    form = {"username": "ana", "password": PASSWORD, "csrf_token": csrf_of(page.text), "next": "//evil.example/"}
    response = await client.post("/login", data=form)
    assert response.headers["location"] == "/"


async def test_logout_needs_the_csrf_token_and_ends_the_session(client: httpx.AsyncClient) -> None:
    await sign_in(client)
    page = await client.get("/rules")
    assert (await client.post("/logout", data={"csrf_token": "nope"})).status_code == 403
    response = await client.post("/logout", data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 303
    assert (await client.get("/rules")).status_code == 303


async def test_pages_render(client: httpx.AsyncClient, source: FakeSource) -> None:
    await sign_in(client)
    overview = await client.get("/?range=7d")
    assert overview.status_code == 200
    assert "<svg" in overview.text
    assert overview.text.count("<rect x=") == 28
    rules = await client.get("/rules")
    assert "Failed login burst" in rules.text
    assert "rules/bad.yaml: rule x: field window: required" in rules.text
    health = await client.get("/health")
    assert "connection refused" in health.text
    assert "not ready" in health.text
    data = (await client.get("/overview/data.json")).json()
    assert data["counts"]["total"] == 3
    assert data["counts"]["CRITICAL"] == 1


async def test_list_filters_reach_the_source(client: httpx.AsyncClient, source: FakeSource) -> None:
    await sign_in(client)
    response = await client.get("/alerts", params=[("severity", "ERROR"), ("severity", "bogus"), ("q", "db-1")])
    assert response.status_code == 200
    query = source.queries[-1]
    assert query.severity == [Severity.ERROR]
    assert query.text == "db-1"
    assert "Rule sensitive-file" in response.text
    assert "Rule failed-login-burst" not in response.text


async def test_list_pages_with_the_cursor(client: httpx.AsyncClient, source: FakeSource) -> None:
    base = utcnow() - timedelta(days=1)
    for minute in range(55):
        source.add(make_alert(rule_id=f"bulk-{minute:02d}", first_seen=base - timedelta(minutes=minute)))
    await sign_in(client)
    first = await client.get("/alerts", params={"range": "30d"})
    match = re.search(r'href="(/alerts\?[^"]*cursor=[^"]+)" rel="next"', first.text)
    assert match is not None
    second = await client.get(match.group(1).replace("&amp;", "&"))
    assert second.text.count('class="alert-row"') == 58 - 50
    assert "Rule bulk-54" in second.text
    assert "← Newest" in second.text


async def test_bad_time_filter_is_explained_not_500(client: httpx.AsyncClient) -> None:
    await sign_in(client)
    response = await client.get("/alerts", params={"since": "yesterday-ish"})
    assert response.status_code == 200
    assert "is not a date and time" in response.text


async def test_event_fields_are_escaped(client: httpx.AsyncClient, source: FakeSource) -> None:
    await sign_in(client)
    xss = next(a for a in source.alerts.values() if a.user_id == XSS_USER)
    for path in ("/alerts", f"/alerts/{xss.alert_id}", "/"):
        html = (await client.get(path)).text
        assert XSS_USER not in html
        assert "<script>alert(1)" not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html


async def test_analyst_acknowledges_with_a_note(client: httpx.AsyncClient, source: FakeSource) -> None:
    await sign_in(client)
    alert = next(iter(source.alerts.values()))
    page = await client.get(f"/alerts/{alert.alert_id}")
    assert "Acknowledge" in page.text
    form = {"csrf_token": csrf_of(page.text), "status": "acknowledged", "note": "looking into it"}
    response = await client.post(f"/alerts/{alert.alert_id}", data=form)
    assert response.status_code == 303
    assert source.alerts[alert.alert_id].status is AlertStatus.ACKNOWLEDGED
    detail = await client.get(response.headers["location"])
    assert "Alert acknowledged." in detail.text
    assert "looking into it" in detail.text
    assert source.alerts[alert.alert_id].history[-1].actor == "ana"


async def test_status_change_without_csrf_is_refused(client: httpx.AsyncClient, source: FakeSource) -> None:
    await sign_in(client)
    alert = next(iter(source.alerts.values()))
    response = await client.post(f"/alerts/{alert.alert_id}", data={"status": "resolved"})
    assert response.status_code == 403
    assert source.alerts[alert.alert_id].status is AlertStatus.OPEN


async def test_viewer_sees_no_form_and_cannot_post(client: httpx.AsyncClient, source: FakeSource) -> None:
    await sign_in(client, "vic")
    alert = next(iter(source.alerts.values()))
    page = await client.get(f"/alerts/{alert.alert_id}")
    assert 'name="note"' not in page.text
    response = await client.post(
        f"/alerts/{alert.alert_id}", data={"csrf_token": csrf_of(page.text), "status": "resolved"}
    )
    assert response.status_code == 403
    assert source.alerts[alert.alert_id].status is AlertStatus.OPEN


async def test_unknown_alert_and_outage_render_error_pages(client: httpx.AsyncClient, source: FakeSource) -> None:
    await sign_in(client)
    assert (await client.get(f"/alerts/{uuid4()}")).status_code == 404
    assert (await client.get("/alerts/not-a-uuid")).status_code == 404
    source.down = True
    response = await client.get("/alerts")
    assert response.status_code == 503
    assert "cannot be reached" in response.text
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


async def test_stream_sends_only_alerts_newer_than_the_page(client: httpx.AsyncClient, source: FakeSource) -> None:
    await sign_in(client)
    newest = max(to_millis(a.first_seen) for a in source.alerts.values())
    fresh = make_alert(rule_id="brand-new", severity=Severity.CRITICAL)
    source.add(fresh)
    response = await client.get("/events/stream", params={"after": str(newest), "severity": "CRITICAL"})
    assert response.headers["content-type"].startswith("text/event-stream")
    alerts = [line for line in response.text.splitlines() if line.startswith("data:") and "rule_id" in line]
    assert len(alerts) == 1
    assert str(fresh.alert_id) in alerts[0]
    assert "event: bye" in response.text


async def test_stream_reports_an_outage_and_keeps_going(client: httpx.AsyncClient, source: FakeSource) -> None:
    await sign_in(client)
    source.down = True
    response = await client.get("/events/stream")
    assert response.status_code == 200
    assert "event: status" in response.text
    assert "Live updates paused" in response.text
    assert "event: bye" in response.text


async def test_links_and_cookies_follow_a_path_prefix(tmp_path: Path, source: FakeSource) -> None:
    settings = Settings(data_dir=tmp_path, dashboard_users=[SecretStr(e) for e in ENTRIES])
    main = FastAPI()
    main.mount("/ui", build_dashboard(settings, source))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=main), base_url="http://testserver") as http:
        assert (await http.get("/ui/alerts")).headers["location"] == "/ui/login?next=%2Falerts"
        login = await http.get("/ui/login")
        assert "Path=/ui" in login.headers["set-cookie"]
        form = {"username": "ana", "password": PASSWORD, "csrf_token": csrf_of(login.text), "next": "/rules"}
        assert (await http.post("/ui/login", data=form)).headers["location"] == "/ui/rules"
        page = await http.get("/ui/alerts")
        links = set(re.findall(r'(?:href|action|src|data-stream)="(/[^"?]*)', page.text))
        assert links
        assert all(link.startswith("/ui/") for link in links)
