"""The dashboard's shared state (source, users, sessions, throttle, templates) and the helpers every route uses
to reach it and to render a page."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson
from fastapi import HTTPException, Request, status
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from auditflow.config import Settings
from auditflow.model.event import Event
from auditflow.model.timeutil import format_utc, utcnow
from auditflow.services.dashboard.auth import Session
from auditflow.services.dashboard.passwords import PasswordCheckPool
from auditflow.services.dashboard.sessions import SessionStore
from auditflow.services.dashboard.source import AlertSource
from auditflow.services.dashboard.throttle import LoginThrottle
from auditflow.services.dashboard.users import UserDirectory
from auditflow.services.dashboard.views import (
    RANGE_LABELS,
    SEVERITIES,
    STATUSES,
    attack_url,
    format_time,
    link_url,
    time_ago,
)

SESSION_SCOPE_KEY = "auditflow.dashboard.session"


@dataclass(slots=True)
class Dashboard:
    settings: Settings
    source: AlertSource
    users: UserDirectory
    sessions: SessionStore
    throttle: LoginThrottle
    passwords: PasswordCheckPool
    templates: Jinja2Templates
    poll_interval: float = 2.0
    stream_lifetime: float = 600.0
    closing: bool = False

    def close_streams(self) -> None:
        """End every live stream at its next poll, so that a server shutdown is not held up by
        browsers that keep their event stream open. Safe to call from any thread."""
        self.closing = True

    async def aclose(self) -> None:
        """Release the alert source, the session store, the throttle and the password-check threads."""
        self.passwords.close()
        try:
            await self.source.aclose()
        finally:
            try:
                await self.sessions.aclose()
            finally:
                await self.throttle.aclose()


def _pretty_event(event: Event) -> str:
    return orjson.dumps(event.model_dump(mode="json"), option=orjson.OPT_INDENT_2).decode()


@cache
def create_templates() -> Jinja2Templates:
    # Autoescaping is on for every template and every string: event fields are attacker-controlled.
    env = Environment(
        loader=PackageLoader("auditflow.services.dashboard", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        time=format_time,
        ago=time_ago,
        iso=format_utc,
        pretty_event=_pretty_event,
        attack_url=attack_url,
        link_url=link_url,
    )
    env.globals.update(SEVERITIES=SEVERITIES, STATUSES=STATUSES, RANGE_LABELS=RANGE_LABELS)
    return Jinja2Templates(env=env)


def get_dashboard(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


def root_path(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def current_session(request: Request) -> Session:
    """The signed-in user's session; the access gate has already turned everyone else away."""
    session: Session | None = request.scope.get(SESSION_SCOPE_KEY)
    if session is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Sign in first.")
    return session


def render(request: Request, template: str, *, status_code: int = 200, **context: Any) -> Response:
    dashboard = get_dashboard(request)
    base = {
        "session": request.scope.get(SESSION_SCOPE_KEY),
        "root": root_path(request),
        "now": utcnow(),
        "active": "",
        "title": "",
    }
    return dashboard.templates.TemplateResponse(request, template, {**base, **context}, status_code=status_code)
