"""The dashboard in a real browser: sign-in, filters, triage, live rows, and inert XSS payloads."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.conftest import PASSWORD, RULES, LiveServer, shoot, sign_in
from tests.factories import alert_for_rule

pytestmark = pytest.mark.browser

XSS_USER = "<img src=x onerror=alert(1)>"
XSS_DETAIL = "<script>alert(1)</script>"


def test_sign_in_with_a_wrong_password_then_the_right_one(page: Any) -> None:
    page.goto("/alerts")
    assert page.url.endswith("/login?next=%2Falerts")
    shoot(page, "01-login")
    sign_in(page, "analyst", "not-the-password")
    assert page.locator("#login-error").inner_text() == "Invalid username or password."
    sign_in(page, "nobody", PASSWORD)
    assert page.locator("#login-error").inner_text() == "Invalid username or password."
    shoot(page, "01-login-error")
    sign_in(page, "analyst", PASSWORD)
    page.wait_for_url("**/")
    assert page.locator("h1").inner_text() == "Overview"
    assert page.locator("#alerts-chart rect").count() == 24
    assert int(page.locator(".stat-value[data-count=CRITICAL]").inner_text()) > 0
    shoot(page, "02-overview")


def test_filter_open_and_acknowledge_with_a_note(page: Any) -> None:
    sign_in(page)
    page.goto("/alerts")
    shoot(page, "03-alerts")
    page.click("label.chip-CRITICAL")
    page.fill("input[name=q]", "web-01")
    page.click("button:has-text('Apply')")
    page.wait_for_url(re.compile(r"severity=CRITICAL"))
    rows = page.locator("tr.alert-row")
    assert rows.count() > 0
    assert set(page.locator("tr.alert-row .sev").all_inner_texts()) == {"CRITICAL"}
    assert all("web-01" in host for host in page.locator("tr.alert-row .col-host").all_inner_texts())
    shoot(page, "04-alerts-filtered")

    rows.first.locator("a.alert-link").click()
    page.wait_for_url(re.compile(r"/alerts/[0-9a-f-]{36}$"))
    assert page.locator(".detail-badges .status").inner_text() == "open"
    assert page.locator("pre.json").first.inner_text().lstrip().startswith("{")
    page.fill("#note", "Checked with the host owner: planned rotation.")
    page.click("button:has-text('Acknowledge')")
    page.wait_for_url(re.compile(r"saved=acknowledged"))
    assert page.locator(".detail-badges .status").inner_text() == "acknowledged"
    history = page.locator("#history .timeline-item").first
    assert "analyst" in history.inner_text()
    assert "Checked with the host owner: planned rotation." in history.inner_text()
    assert "acknowledged" in history.inner_text()
    shoot(page, "05-alert-detail")


def test_a_new_alert_appears_live(page: Any, live_server: LiveServer) -> None:
    sign_in(page)
    page.goto("/alerts")
    page.wait_for_selector("[data-live]:not([hidden])")
    page.evaluate("window.__notReloaded = true")
    fresh = alert_for_rule(RULES[2], user="mallory", host="bastion-01", minutes_ago=0, occurrences=4)
    live_server.add_alerts(fresh)
    row = page.locator(f"tr[data-id='{fresh.alert_id}']")
    row.wait_for()
    assert page.evaluate("window.__notReloaded") is True
    assert page.locator("tr.alert-row").first.get_attribute("data-id") == str(fresh.alert_id)
    assert row.locator(".sev").inner_text() == "CRITICAL"
    assert row.locator(".col-user").inner_text() == "mallory"
    shoot(page, "06-alerts-live")


def _assert_inert(page: Any, dialogs: list[str]) -> None:
    assert dialogs == []
    assert page.locator("img").count() == 0
    injected = page.evaluate("Array.from(document.scripts).filter(s => s.textContent.includes('alert(1)')).length")
    assert injected == 0
    assert page.evaluate("document.querySelectorAll('[onerror]').length") == 0


def test_xss_payloads_render_as_text(page: Any, live_server: LiveServer, dialogs: list[str]) -> None:
    stored = alert_for_rule(RULES[0], user=XSS_USER, host="web-02", minutes_ago=1, details={"comment": XSS_DETAIL})
    live_server.add_alerts(stored)
    sign_in(page)
    page.goto("/alerts")
    page.wait_for_selector("[data-live]:not([hidden])")
    # One payload through the server-rendered rows, one through the live path (the page script).
    live = alert_for_rule(RULES[1], user=XSS_USER, host=XSS_DETAIL, minutes_ago=0, details={"comment": XSS_DETAIL})
    live_server.add_alerts(live)
    page.locator(f"tr[data-id='{live.alert_id}']").wait_for()
    assert page.locator(f"tr[data-id='{live.alert_id}'] .col-user").inner_text() == XSS_USER
    assert page.locator(f"tr[data-id='{live.alert_id}'] .col-host").inner_text() == XSS_DETAIL
    assert page.locator(f"tr[data-id='{stored.alert_id}'] .col-user").inner_text() == XSS_USER
    _assert_inert(page, dialogs)

    page.goto(f"/alerts/{stored.alert_id}")
    assert XSS_DETAIL in page.locator("pre.json").first.inner_text()
    assert XSS_USER in page.locator(".facts").first.inner_text()  # the alert's facts; the rule's follow
    _assert_inert(page, dialogs)
    shoot(page, "07-xss-detail")
    page.goto("/")
    _assert_inert(page, dialogs)
    shoot(page, "07-xss-overview")


def test_rules_and_health_pages(page: Any) -> None:
    sign_in(page)
    page.goto("/rules")
    assert page.locator(".rules-table tbody tr").count() == len(RULES)
    shoot(page, "08-rules")
    page.goto("/health")
    assert page.locator(".readiness").inner_text().lower() == "degraded"
    assert "field required" in page.locator(".health-table").inner_text()
    shoot(page, "09-health")
