"""The acceptance path of a new user: start `auditflow run`, sign in with the printed password, and
watch the demo's alerts arrive, in a real browser against the real process."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import shoot
from tests.e2e.processes import AuditflowProcess, auditflow_env, free_port

pytestmark = pytest.mark.browser


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[AuditflowProcess]:
    port = free_port()
    process = AuditflowProcess(["run", "--port", str(port), "--generator-rate", "40"], auditflow_env(tmp_path), port)
    process.start()
    yield process
    code, _ = process.terminate()
    assert code == 0


def printed_password(process: AuditflowProcess, timeout: float = 30.0) -> re.Match[str] | None:
    """The banner's password line. The banner follows the server's start by a moment (it is printed
    once uvicorn says it started, which /healthz may answer before), so wait for it."""
    deadline = time.monotonic() + timeout
    while True:
        printed = re.search(r"dashboard login \(shown once\): admin / (\S+)", process.read_output())
        if printed is not None or time.monotonic() > deadline:
            return printed
        time.sleep(0.05)


def test_sign_in_with_the_printed_password_and_see_live_alerts(browser: Any, demo: AuditflowProcess) -> None:
    printed = printed_password(demo)
    assert printed, demo.read_output()
    context = browser.new_context(base_url=demo.url, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        page.goto("/")
        page.wait_for_url("**/login**")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", printed.group(1))
        page.click("button[type=submit]")
        page.wait_for_url(f"{demo.url}/")
        page.goto("/alerts")
        page.locator("tr.alert-row").first.wait_for(timeout=30_000)
        shoot(page, "10-run-alerts")
        page.locator("tr.alert-row a.alert-link").first.click()
        page.wait_for_url(re.compile(r"/alerts/[0-9a-f-]{36}$"))
        assert page.locator("pre.json").count() > 0
        shoot(page, "11-run-alert-detail")
        for path in ("/rules", "/health"):
            page.goto(path)
            assert page.locator("h1").count() == 1
        assert "failed-login-burst" in page.goto("/rules").text()
        health = page.goto("/health").text()
        assert "broker" in health
        assert "store" in health
    finally:
        context.close()
