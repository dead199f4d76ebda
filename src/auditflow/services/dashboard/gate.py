"""The dashboard's outer layer: security headers on every response, and an access gate that lets only
the sign-in page and static assets through without a valid session."""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auditflow.errors import BackendError, BackendUnavailable
from auditflow.services.dashboard.auth import SESSION_COOKIE, Session
from auditflow.services.dashboard.context import SESSION_SCOPE_KEY, Dashboard

log = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
PUBLIC_PATHS = {"/login"}
PUBLIC_PREFIXES = ("/static/",)
# Answered with 401 rather than a redirect: scripts call them, and a redirect to an HTML page
# would only confuse an EventSource or fetch().
SCRIPT_PATHS = ("/events/", "/overview/data.json")


def route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] or "/" if root and path.startswith(root) else path


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


async def live_session(dashboard: Dashboard, session_id: str | None) -> Session | None:
    """The session with this id if it is still valid; BackendError when the store cannot tell."""
    record = await dashboard.sessions.get(session_id)
    if record is None or session_id is None:
        return None
    # The directory has the last word: a removed user is signed out, a changed role applies at
    # once, and a changed password ends every session opened with the old one.
    user = dashboard.users.get(record.user)
    if user is None or user.stamp != record.stamp:
        return None
    return Session(id=session_id, user=user.name, role=user.role, expires=record.expires, csrf=record.csrf)


class DashboardGate:
    """Pure ASGI so that streaming responses (the live event stream) pass through untouched."""

    def __init__(self, app: ASGIApp, dashboard: Dashboard) -> None:
        self.app = app
        self.dashboard = dashboard

    async def _session(self, conn: HTTPConnection) -> Session | None:
        return await live_session(self.dashboard, conn.cookies.get(SESSION_COOKIE))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if not path.startswith(PUBLIC_PREFIXES):
                    headers["Cache-Control"] = "no-store"
            await send(message)

        conn = HTTPConnection(scope)
        try:
            session = await self._session(conn)
        except (BackendUnavailable, BackendError) as exc:
            if not is_public(path):
                log.warning("dashboard: session store unavailable: %s", exc)
                unavailable = PlainTextResponse(
                    "Sessions cannot be checked right now. Try again in a moment.",
                    status_code=503,
                    headers={"Retry-After": "5"},
                )
                await unavailable(scope, receive, send_with_headers)
                return
            session = None
        if session is None and not is_public(path):
            await self._refuse(conn, path)(scope, receive, send_with_headers)
            return
        scope[SESSION_SCOPE_KEY] = session
        await self.app(scope, receive, send_with_headers)

    @staticmethod
    def _refuse(conn: HTTPConnection, path: str) -> Response:
        if path.startswith(SCRIPT_PATHS):
            return PlainTextResponse("Sign in first.", status_code=401)
        root = str(conn.scope.get("root_path", "")).rstrip("/")
        target = f"{root}/login"
        if conn.scope["method"] in ("GET", "HEAD") and path != "/":
            wanted = path + (f"?{conn.url.query}" if conn.url.query else "")
            target += "?" + urlencode({"next": wanted})
        return RedirectResponse(target, status_code=303)
