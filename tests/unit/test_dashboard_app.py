"""Dashboard routes over the embedded alert source and a real SQLite store: access gate, sign-in,
CSRF, roles, pages, filters, paging, escaping."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from auditflow.backends.store.sql import SqlAlertStore
from auditflow.config import Settings
from auditflow.model.alert import Alert, AlertStatus
from auditflow.model.event import Severity
from auditflow.model.timeutil import to_millis, utcnow
from auditflow.services.dashboard import build_dashboard
from auditflow.services.dashboard.gate import CONTENT_SECURITY_POLICY
from tests.factories import make_alert
from tests.unit.dashboard_support import (
    ENTRIES,
    PASSWORD,
    XSS_DETAIL,
    XSS_USER,
    RecordingSource,
    csrf_of,
    sign_in,
)


@pytest.fixture
async def seeded(alert_store: SqlAlertStore) -> dict[str, Alert]:
    now = utcnow()
    alerts = {
        "root": make_alert(severity=Severity.CRITICAL, user_id="root", first_seen=now - timedelta(minutes=5)),
        "bob": make_alert(
            rule_id="sensitive-file",
            rule_name="Sensitive file modified",
            severity=Severity.ERROR,
            user_id="bob",
            server_hostname="db-1",
            first_seen=now - timedelta(hours=2),
        ),
        "xss": make_alert(
            user_id=XSS_USER,
            server_hostname="web-2",
            first_seen=now - timedelta(hours=3),
            details={"note": XSS_DETAIL},
        ),
    }
    await alert_store.upsert_alerts(list(alerts.values()))
    return alerts


@pytest.fixture
def source(alert_store: SqlAlertStore, seeded: dict[str, Alert]) -> RecordingSource:
    return RecordingSource(alert_store)


@pytest.fixture
async def app(tmp_path: Path, source: RecordingSource) -> AsyncIterator[FastAPI]:
    # Sessions in the SQLite file of the data directory, as `auditflow run` keeps them.
    settings = Settings(data_dir=tmp_path, dashboard_users=[SecretStr(e) for e in ENTRIES])
    dashboard = build_dashboard(settings, source, poll_interval=0.01, stream_lifetime=0.05)
    yield dashboard
    await dashboard.state.dashboard.aclose()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.mark.parametrize(
    "path", ["/", "/alerts", "/alerts/7d3c8a52-1b8e-4c1a-9f0e-2a6b5d4c3e21", "/rules", "/health", "/nowhere"]
)
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
    session_id = client.cookies["auditflow_session"]
    # The cookie is a random id and nothing else: no user name or role to edit.
    assert "ana" not in session_id
    assert len(session_id) == 43
    for forged in (session_id[::-1], session_id[:-1] + ("A" if session_id[-1] != "A" else "B"), "x" * 43, "a.b"):
        client.cookies.set("auditflow_session", forged)
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


async def test_pages_render(client: httpx.AsyncClient) -> None:
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


def shown(html: str) -> list[str]:
    """Ids of the alert rows of a list page, top to bottom."""
    return re.findall(r'class="alert-row" data-id="([^"]+)"', html)


async def test_list_filters_reach_the_store(
    client: httpx.AsyncClient, source: RecordingSource, seeded: dict[str, Alert]
) -> None:
    await sign_in(client)
    response = await client.get("/alerts", params=[("severity", "ERROR"), ("severity", "bogus"), ("q", "db-1")])
    assert response.status_code == 200
    query = source.queries[-1]
    assert query.severity == [Severity.ERROR]
    assert query.text == "db-1"
    assert shown(response.text) == [str(seeded["bob"].alert_id)]
    assert "Sensitive file modified" in response.text
    # Each filter alone selects: the text one finds bob's host, the severity one the critical alert.
    by_text = await client.get("/alerts", params={"q": "db-1"})
    assert shown(by_text.text) == [str(seeded["bob"].alert_id)]
    by_severity = await client.get("/alerts", params={"severity": "CRITICAL"})
    assert shown(by_severity.text) == [str(seeded["root"].alert_id)]


async def test_list_pages_with_the_cursor(
    client: httpx.AsyncClient, alert_store: SqlAlertStore, seeded: dict[str, Alert]
) -> None:
    base = utcnow() - timedelta(days=1)
    bulk = [
        make_alert(
            rule_id=f"bulk-{minute:02d}",
            rule_name=f"Rule bulk-{minute:02d}",
            first_seen=base - timedelta(minutes=minute),
        )
        for minute in range(55)
    ]
    await alert_store.upsert_alerts(bulk)
    await sign_in(client)
    first = await client.get("/alerts", params={"range": "30d"})
    newest_first = [str(a.alert_id) for a in [seeded["root"], seeded["bob"], seeded["xss"], *bulk]]
    assert shown(first.text) == newest_first[:50]
    match = re.search(r'href="(/alerts\?[^"]*cursor=[^"]+)" rel="next"', first.text)
    assert match is not None
    second = await client.get(match.group(1).replace("&amp;", "&"))
    assert shown(second.text) == newest_first[50:]
    assert second.text.count('class="alert-row"') == 58 - 50
    assert "Rule bulk-54" in second.text
    assert "← Newest" in second.text
    assert 'rel="next"' not in second.text


async def test_bad_time_filter_is_explained_not_500(client: httpx.AsyncClient) -> None:
    await sign_in(client)
    response = await client.get("/alerts", params={"since": "yesterday-ish"})
    assert response.status_code == 200
    assert "is not a date and time" in response.text


async def test_event_fields_are_escaped(client: httpx.AsyncClient, seeded: dict[str, Alert]) -> None:
    await sign_in(client)
    xss = seeded["xss"]
    for path in ("/alerts", f"/alerts/{xss.alert_id}", "/"):
        html = (await client.get(path)).text
        assert XSS_USER not in html
        assert "<script>alert(1)" not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html


async def test_analyst_acknowledges_with_a_note(
    client: httpx.AsyncClient, alert_store: SqlAlertStore, seeded: dict[str, Alert]
) -> None:
    await sign_in(client)
    alert = seeded["root"]
    page = await client.get(f"/alerts/{alert.alert_id}")
    assert "Acknowledge" in page.text
    form = {"csrf_token": csrf_of(page.text), "status": "acknowledged", "note": "looking into it"}
    response = await client.post(f"/alerts/{alert.alert_id}", data=form)
    assert response.status_code == 303
    stored = await alert_store.get_alert(alert.alert_id)
    assert stored.status is AlertStatus.ACKNOWLEDGED
    assert [(c.actor, c.from_status, c.to_status, c.note) for c in stored.history] == [
        ("ana", AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED, "looking into it")
    ]
    detail = await client.get(response.headers["location"])
    assert "Alert acknowledged." in detail.text
    assert "looking into it" in detail.text


async def test_status_change_without_csrf_is_refused(
    client: httpx.AsyncClient, alert_store: SqlAlertStore, seeded: dict[str, Alert]
) -> None:
    await sign_in(client)
    alert = seeded["root"]
    response = await client.post(f"/alerts/{alert.alert_id}", data={"status": "resolved"})
    assert response.status_code == 403
    stored = await alert_store.get_alert(alert.alert_id)
    assert stored.status is AlertStatus.OPEN
    assert stored.history == []


async def test_viewer_sees_no_form_and_cannot_post(
    client: httpx.AsyncClient, alert_store: SqlAlertStore, seeded: dict[str, Alert]
) -> None:
    await sign_in(client, "vic")
    alert = seeded["root"]
    page = await client.get(f"/alerts/{alert.alert_id}")
    assert 'name="note"' not in page.text
    response = await client.post(
        f"/alerts/{alert.alert_id}", data={"csrf_token": csrf_of(page.text), "status": "resolved"}
    )
    assert response.status_code == 403
    stored = await alert_store.get_alert(alert.alert_id)
    assert stored.status is AlertStatus.OPEN
    assert stored.history == []


async def test_unknown_alert_and_outage_render_error_pages(
    client: httpx.AsyncClient, alert_store: SqlAlertStore
) -> None:
    await sign_in(client)
    assert (await client.get(f"/alerts/{uuid4()}")).status_code == 404
    assert (await client.get("/alerts/not-a-uuid")).status_code == 404
    await alert_store.aclose()  # the store is gone: every read raises BackendUnavailable
    response = await client.get("/alerts")
    assert response.status_code == 503
    assert "cannot be reached" in response.text
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


async def test_stream_sends_only_alerts_newer_than_the_page(
    client: httpx.AsyncClient, alert_store: SqlAlertStore, seeded: dict[str, Alert]
) -> None:
    await sign_in(client)
    newest = max(to_millis(a.first_seen) for a in seeded.values())
    fresh = make_alert(rule_id="brand-new", severity=Severity.CRITICAL, first_seen=utcnow())
    await alert_store.upsert_alerts([fresh])
    response = await client.get("/events/stream", params={"after": str(newest), "severity": "CRITICAL"})
    assert response.headers["content-type"].startswith("text/event-stream")
    alerts = [line for line in response.text.splitlines() if line.startswith("data:") and "rule_id" in line]
    assert len(alerts) == 1
    assert str(fresh.alert_id) in alerts[0]
    assert "event: bye" in response.text


async def test_stream_reports_an_outage_and_keeps_going(client: httpx.AsyncClient, alert_store: SqlAlertStore) -> None:
    await sign_in(client)
    await alert_store.aclose()
    response = await client.get("/events/stream")
    assert response.status_code == 200
    assert "event: status" in response.text
    assert "Live updates paused" in response.text
    assert "event: bye" in response.text


async def test_links_and_cookies_follow_a_path_prefix(tmp_path: Path, source: RecordingSource) -> None:
    settings = Settings(data_dir=tmp_path, dashboard_users=[SecretStr(e) for e in ENTRIES])
    main = FastAPI()
    dashboard = build_dashboard(settings, source)
    main.mount("/ui", dashboard)
    transport = httpx.ASGITransport(app=main)
    async with (
        aclosing(dashboard.state.dashboard),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        assert (await http.get("/ui/alerts")).headers["location"] == "/ui/login?next=%2Falerts"
        login = await http.get("/ui/login")
        assert "Path=/ui" in login.headers["set-cookie"]
        form = {"username": "ana", "password": PASSWORD, "csrf_token": csrf_of(login.text), "next": "/rules"}
        assert (await http.post("/ui/login", data=form)).headers["location"] == "/ui/rules"
        page = await http.get("/ui/alerts")
        links = set(re.findall(r'(?:href|action|src|data-stream)="(/[^"?]*)', page.text))
        assert links
        assert all(link.startswith("/ui/") for link in links)


async def test_a_cursor_the_source_refuses_is_explained_not_500(client: httpx.AsyncClient) -> None:
    await sign_in(client)
    response = await client.get("/alerts", params={"cursor": "abc"})
    assert response.status_code == 200
    assert "The page link is not valid" in response.text


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
async def test_a_time_filter_out_of_range_is_explained_not_500(client: httpx.AsyncClient, moment: str) -> None:
    await sign_in(client)
    for path in ("/alerts", "/events/stream"):
        response = await client.get(path, params={"since": moment})
        assert response.status_code == 200
    assert "is not a date and time" in (await client.get("/alerts", params={"until": moment})).text


@pytest.mark.parametrize("after", ["1e21", "1" + "0" * 30, "-5", "nan", "inf"])
async def test_stream_position_out_of_range_still_streams(client: httpx.AsyncClient, after: str) -> None:
    await sign_in(client)
    response = await client.get("/events/stream", params={"after": after})
    assert response.status_code == 200
    assert "event: bye" in response.text
