"""Browser-test harness: a real uvicorn server (dashboard over the SQLite alert store) in a background
thread, Debian's Chromium driven by Playwright, and a screenshot of the page when a test fails."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Coroutine, Generator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
from argon2 import PasswordHasher
from fastapi import FastAPI
from pydantic import SecretStr

from auditflow.bench.processes import free_port
from auditflow.config import Settings
from auditflow.model.alert import Alert
from auditflow.model.event import Severity
from auditflow.model.status import DependencyStatus, Readiness, RuleInfo, RulesStatus
from auditflow.model.timeutil import utcnow
from auditflow.services.dashboard import LocalAlertSource, build_dashboard
from tests.conftest import IN_CI
from tests.factories import alert_for_rule

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
PASSWORD = "s3cret-for-browser-tests"
# Cheap argon2 parameters: verification reads them from the hash, so sign-in stays fast in tests.
_CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
T = TypeVar("T")

RULES = [
    RuleInfo(
        id="failed-login-burst",
        name="Failed login burst",
        description="3 or more failed logins for one user and host within 60 s",
        kind="threshold",
        severity=Severity.WARNING,
        tags=["auth", "brute-force"],
        enabled=True,
        suppress_for_seconds=300,
        window_seconds=60,
        group_by=["user_id", "server_hostname"],
        source="default.yaml",
    ),
    RuleInfo(
        id="sensitive-file-modified",
        name="Sensitive file modified",
        description="A credential or sudo configuration file was changed",
        kind="match",
        severity=Severity.CRITICAL,
        tags=["integrity"],
        enabled=True,
        suppress_for_seconds=600,
        source="default.yaml",
    ),
    RuleInfo(
        id="login-after-failures",
        name="Login after failure burst",
        description="A successful login right after a burst of failures: possible compromise",
        kind="sequence",
        severity=Severity.CRITICAL,
        tags=["auth"],
        enabled=True,
        suppress_for_seconds=600,
        window_seconds=300,
        group_by=["user_id", "server_hostname"],
        source="default.yaml",
    ),
    RuleInfo(
        id="destructive-sudo",
        name="Destructive sudo command",
        description="sudo ran a destructive or privilege-changing command",
        kind="match",
        severity=Severity.ERROR,
        tags=["privilege"],
        enabled=True,
        suppress_for_seconds=120,
        source="default.yaml",
    ),
    RuleInfo(
        id="service-stopped",
        name="Service stopped unexpectedly",
        description="A monitored service stopped outside a maintenance window",
        kind="match",
        severity=Severity.INFO,
        tags=["availability"],
        enabled=False,
        suppress_for_seconds=900,
        source="default.yaml",
    ),
]
USERS = ["alice", "bob", "carol", "svc-backup", "deploy", "root"]
HOSTS = ["web-01", "web-02", "db-01", "bastion-01", "build-03"]


def demo_alerts() -> list[Alert]:
    """A day and a half of varied alerts, so that every page has something to show."""
    alerts = []
    for i in range(46):
        rule = RULES[(i * 7) % 4]
        alerts.append(
            alert_for_rule(
                rule,
                user=USERS[i % len(USERS)],
                host=HOSTS[(i * 3) % len(HOSTS)],
                minutes_ago=20 + i * 47 + (i % 5) * 13,
                occurrences=1 + (i * 5) % 9,
            )
        )
    return alerts


@dataclass
class LiveServer:
    url: str
    loop: asyncio.AbstractEventLoop
    store: Any
    ready: threading.Event = field(default_factory=threading.Event)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop (the store belongs to it) and wait for the result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def add_alerts(self, *alerts: Alert) -> None:
        self.run(self.store.upsert_alerts(list(alerts)))


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from auditflow.backends.store.sql import SqlAlertStore

    data_dir = tmp_path_factory.mktemp("dashboard")
    users = [SecretStr(f"analyst:analyst:{_CHEAP.hash(PASSWORD)}"), SecretStr(f"viewer:viewer:{_CHEAP.hash(PASSWORD)}")]
    settings = Settings(data_dir=data_dir, dashboard_users=users)
    store = SqlAlertStore(f"sqlite:///{data_dir / 'alerts.sqlite3'}")
    started = threading.Event()
    holder: dict[str, asyncio.AbstractEventLoop] = {}

    async def readiness() -> Readiness:
        await store.ping()
        deps = [
            DependencyStatus(
                name="store", status="up", critical=True, detail="sqlite", last_change=utcnow() - timedelta(hours=2)
            ),
            DependencyStatus(
                name="broker", status="up", critical=True, detail="memory", last_change=utcnow() - timedelta(hours=2)
            ),
            DependencyStatus(
                name="rules",
                status="down",
                critical=False,
                detail="rules/",
                last_error="rules/custom.yaml: rule brute-2: window: field required",
                last_change=utcnow() - timedelta(minutes=4),
                impact="the previous rules stay active",
            ),
        ]
        return Readiness(status="degraded", service="auditflow", dependencies=deps)

    def rules() -> RulesStatus:
        return RulesStatus(
            rules=RULES,
            version="9f2c61d0a4b7e3",
            source="rules/",
            loaded_at=utcnow() - timedelta(hours=2),
            last_error=None,
        )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await store.start()
        await store.migrate()
        await store.upsert_alerts(demo_alerts())
        holder["loop"] = asyncio.get_running_loop()
        started.set()
        yield
        await dashboard.state.dashboard.aclose()
        await store.aclose()

    app = FastAPI(lifespan=lifespan)
    dashboard = build_dashboard(settings, LocalAlertSource(store, rules, readiness), poll_interval=0.3)
    app.mount("/", dashboard)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=5
        )
    )
    thread = threading.Thread(target=server.run, name="dashboard-server", daemon=True)
    thread.start()
    if not started.wait(timeout=30):
        raise RuntimeError("the dashboard test server did not start")
    try:
        yield LiveServer(url=f"http://127.0.0.1:{port}", loop=holder["loop"], store=store)
    finally:
        dashboard.state.dashboard.close_streams()
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        message = f"{CHROMIUM} is missing (Debian package chromium)"
        if IN_CI:
            pytest.fail(f"{message}; CI=true: browser tests must run")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def dialogs() -> list[str]:
    """Messages of every alert()/confirm()/prompt() the page opened; the XSS test wants none."""
    return []


@pytest.fixture
def page(browser: Any, live_server: LiveServer, dialogs: list[str], request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1440, "height": 900})
    context.set_default_timeout(10_000)
    tab = context.new_page()

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    tab.on("dialog", on_dialog)
    # Script errors and CSP violations (an inline style or script slipped in) show up as console errors;
    # HTTP error statuses do too, but the tests check those themselves (a failed sign-in answers 401).
    errors: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(f"console: {message.text}")

    tab.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    tab.on("console", on_console)
    try:
        yield tab
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            with contextlib.suppress(Exception):
                tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        context.close()
    assert errors == [], "the browser reported errors"


def shoot(page: Any, name: str) -> None:
    """Keep a screenshot of a page for people to look at (test-artifacts/screenshots/)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")  # a sticky header over a scrolled page makes odd full-page shots
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, user: str = "analyst", password: str = PASSWORD) -> None:
    page.goto("/login")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("button[type=submit]")
