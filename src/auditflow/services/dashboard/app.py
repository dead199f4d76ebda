"""The dashboard as a FastAPI sub-application: mounted at `/` by `auditflow run`, or served alone by
`auditflow serve dashboard` over the notification API."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from auditflow import roles
from auditflow.config import Settings
from auditflow.dependencies import Dependency, redact_url
from auditflow.errors import BackendError, BackendUnavailable, ConfigError, NotFound
from auditflow.security import DASHBOARD_SCOPES, ApiToken, dashboard_token
from auditflow.services.dashboard.context import Dashboard, create_templates, render
from auditflow.services.dashboard.gate import DashboardGate
from auditflow.services.dashboard.passwords import PasswordCheckPool
from auditflow.services.dashboard.routes import alerts, channels, dead_letters, login, pages, stream
from auditflow.services.dashboard.sessions import SessionStore, create_session_store, session_store_url
from auditflow.services.dashboard.source import AlertSource, HttpAlertSource, LocalAlertSource
from auditflow.services.dashboard.throttle import LoginThrottle, MemoryLoginThrottle, create_throttle
from auditflow.services.dashboard.users import UserDirectory, ensure_dashboard_users

if TYPE_CHECKING:
    from auditflow.runtime import Runtime

log = logging.getLogger(__name__)

ERROR_TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    422: "Bad request",
    502: "Unexpected answer",
    503: "Temporarily unavailable",
}


def _error_page(request: Request, status_code: int, message: str) -> Response:
    title = ERROR_TITLES.get(status_code, "Error")
    return render(
        request, "error.html", status_code=status_code, title=title, status_code_=status_code, message=message
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if exc.status_code in (400, 403) else "There is no page at this address."
    if exc.status_code == 405:
        message = "This address does not accept that kind of request."
    return _error_page(request, exc.status_code, str(message))


async def _validation_error(request: Request, exc: Exception) -> Response:
    return _error_page(request, 400, "The request was malformed. Go back and try again.")


async def _not_found(request: Request, exc: Exception) -> Response:
    return _error_page(request, 404, "That alert does not exist, or it was removed.")


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.warning("dashboard: alert source unavailable: %s", exc)
    message = "The alert store cannot be reached right now. Try again in a moment; the health page shows what is down."
    return _error_page(request, 503, message)


async def _backend_error(request: Request, exc: Exception) -> Response:
    log.error("dashboard: alert source error: %s", exc)
    return _error_page(request, 502, "The alert service gave an unexpected answer. The details are in the server log.")


def static_directory() -> Path:
    return Path(str(files("auditflow.services.dashboard") / "static"))


def build_dashboard(
    settings: Settings,
    source: AlertSource,
    *,
    users: UserDirectory | None = None,
    sessions: SessionStore | None = None,
    throttle: LoginThrottle | None = None,
    poll_interval: float = 2.0,
    stream_lifetime: float = 600.0,
) -> FastAPI:
    """The dashboard application over `source`.

    Pass `users` from `ensure_dashboard_users(settings)` when the caller shows a generated admin
    password; without it the users are loaded here (and a password generated now is not shown).
    Without `sessions`, the store named by the settings is used (see `session_store_url`), with the
    throttle beside it; a given store comes with the throttle given, or one in memory.
    Call `app.state.dashboard.close_streams()` when shutting down so that open live streams end,
    and `await app.state.dashboard.aclose()` once the server has stopped.
    """
    if users is None:
        users, password = ensure_dashboard_users(settings)
        if password is not None:
            log.warning(
                "dashboard: an admin account was generated but its password was not shown; "
                "delete the dashboard-users file in the data directory and start with `auditflow run`"
            )
    if sessions is None:
        url = session_store_url(settings, has_alert_store=not isinstance(source, HttpAlertSource))
        sessions = create_session_store(url, settings)
        throttle = throttle or create_throttle(url, settings)
    app = FastAPI(title="AuditFlow dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    dashboard = Dashboard(
        settings=settings,
        source=source,
        users=users,
        sessions=sessions,
        throttle=throttle or MemoryLoginThrottle(),
        passwords=PasswordCheckPool(settings.password_check_concurrency, settings.password_check_queue),
        templates=create_templates(),
        poll_interval=poll_interval,
        stream_lifetime=stream_lifetime,
    )
    app.state.dashboard = dashboard
    for router in (login.router, pages.router, alerts.router, stream.router, dead_letters.router, channels.router):
        app.include_router(router, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=static_directory()), name="static")
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(BackendUnavailable, _unavailable)
    app.add_exception_handler(BackendError, _backend_error)
    app.add_middleware(DashboardGate, dashboard=dashboard)
    app.add_middleware(PageMethods)
    return app


class PagesMount(Mount):
    """The dashboard at `/`, under every path that no route of the app claims: a path the app
    serves with other methods (`POST /healthz`) gets the app's own 405, not a dashboard page."""

    def __init__(self, dashboard: ASGIApp, *, claimed: Sequence[BaseRoute]) -> None:
        super().__init__("/", app=dashboard)
        self.claimed = claimed

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and any(route.matches(scope)[0] is not Match.NONE for route in self.claimed):
            return Match.NONE, {}
        return super().matches(scope)


class PageMethods:
    """405 for methods no page answers (TRACE, PUT, ...): mounted at `/`, the dashboard would
    otherwise answer them, for any path, with the sign-in redirect, as if they were a page."""

    ALLOWED = frozenset({"GET", "HEAD", "POST"})

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in self.ALLOWED:
            response = PlainTextResponse(
                "Method Not Allowed", status_code=405, headers={"Allow": ", ".join(sorted(self.ALLOWED))}
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


_SCOPES_TEXT = "+".join(sorted(DASHBOARD_SCOPES))


def alert_source(runtime: Runtime, tokens: Sequence[ApiToken]) -> AlertSource:
    """Where the dashboard of `runtime`'s process reads alerts: its own store when the process
    serves the alerts API (`auditflow run`), the notification service's API otherwise.

    Either way it acts through a token with the dashboard's scopes, so the history reads
    "user via token" as it does for any delegating client of the API."""
    settings = runtime.settings
    own = dashboard_token(tokens)
    if roles.Role.ALERTS_API in runtime.roles:
        assert runtime.store is not None
        if own is None:
            raise ConfigError(
                f"the dashboard needs a token with the scopes {_SCOPES_TEXT} in AUDITFLOW_API_TOKENS, "
                f"e.g. dashboard:{_SCOPES_TEXT}:TOKEN"
            )
        return LocalAlertSource(
            runtime.store,
            runtime.rules_status,
            runtime.readiness,
            acting_through=own,
            channels=runtime.channels,
            rule_info=runtime.rule_info,
        )
    if not settings.alerts_api_url:
        raise ConfigError("AUDITFLOW_ALERTS_API_URL must point the dashboard at the notification API")
    if settings.alerts_api_token is not None:
        secret = settings.alerts_api_token.get_secret_value()
    elif own is not None:
        secret = own.secret.get_secret_value()
    else:
        raise ConfigError(
            f"AUDITFLOW_ALERTS_API_TOKEN must name the notification API's token for the dashboard "
            f"(scopes {_SCOPES_TEXT} there)"
        )
    return HttpAlertSource(settings.alerts_api_url, secret, readiness_urls=settings.readiness_api_url)


def mount_dashboard(
    app: FastAPI, runtime: Runtime, *, tokens: Sequence[ApiToken], users: UserDirectory | None
) -> Dashboard:
    """Mount the dashboard at `/` of `app` when `runtime`'s roles include it; the returned state's
    `close_streams` and `aclose` belong to the process shutdown."""
    settings = runtime.settings
    has_alert_store = roles.Role.ALERTS_API in runtime.roles
    source = alert_source(runtime, tokens)
    url = session_store_url(settings, has_alert_store=has_alert_store)
    sessions = create_session_store(url, settings)
    throttle = create_throttle(url, settings)
    dashboard = build_dashboard(settings, source, users=users, sessions=sessions, throttle=throttle)
    app.router.routes.append(PagesMount(dashboard, claimed=list(app.router.routes)))
    if not (has_alert_store and url == settings.effective_database_url):
        # Sessions elsewhere than the supervised alert store: /readyz says when they cannot be reached.
        runtime.dependencies["sessions"] = Dependency(
            "sessions",
            start=sessions.ping,
            ping=sessions.ping,
            critical=True,
            impact="dashboard sign-in and pages answer 503",
            detail=redact_url(url),
            retry_max=settings.dependency_retry_max,
        )
    state: Dashboard = dashboard.state.dashboard
    return state
