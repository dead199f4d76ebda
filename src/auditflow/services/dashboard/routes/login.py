"""Sign-in and sign-out. Every failure says the same thing; an attempt is reserved with the throttle
(per user name and client address, and per address) before its password is checked, in a bounded
pool; sign-out deletes the session on the server. The form carries a CSRF token of its own before
there is a session."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from auditflow.services.dashboard.auth import SESSION_COOKIE, clear_cookie, set_cookie
from auditflow.services.dashboard.context import SESSION_SCOPE_KEY, current_session, get_dashboard, render, root_path
from auditflow.services.dashboard.csrf import CSRF_FIELD, LOGIN_CSRF_COOKIE, check_csrf, new_token, tokens_match
from auditflow.services.dashboard.passwords import PasswordChecksBusy

router = APIRouter()

GENERIC_FAILURE = "Invalid username or password."
THROTTLED = "Too many failed sign-in attempts. Wait a minute and try again."
BUSY = "Too many sign-ins at once. Try again in a moment."
BUSY_RETRY_SECONDS = 2
EXPIRED = "The sign-in form expired. Please try again."
LOGIN_FORM_SECONDS = 3600


def safe_next(value: str | None) -> str:
    """Only a path on this site: never `//host` or a scheme, so sign-in cannot redirect elsewhere."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")) or any(c in value for c in "\r\n"):
        return "/"
    return value


def _login_page(
    request: Request,
    *,
    error: str | None = None,
    status_code: int = 200,
    username: str = "",
    next_path: str | None = None,
    retry_after: int | None = None,
) -> Response:
    token = new_token()
    response = render(
        request,
        "login.html",
        status_code=status_code,
        title="Sign in",
        error=error,
        csrf_token=token,
        username=username,
        next=safe_next(next_path if next_path is not None else request.query_params.get("next")),
        signed_out="signed_out" in request.query_params,
    )
    set_cookie(request, response, LOGIN_CSRF_COOKIE, token, LOGIN_FORM_SECONDS)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


@router.get("/login")
async def login_form(request: Request) -> Response:
    if request.scope.get(SESSION_SCOPE_KEY) is not None:
        return RedirectResponse(f"{root_path(request)}/", status_code=303)
    return _login_page(request)


@router.post("/login")
async def login(
    request: Request,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    dashboard = get_dashboard(request)
    if not tokens_match(request.cookies.get(LOGIN_CSRF_COOKIE), csrf_token):
        return _login_page(request, error=EXPIRED, status_code=400, username=username, next_path=next)
    client = request.client.host if request.client else "unknown"
    name = username.strip()
    attempt = await dashboard.throttle.reserve(name, client)
    if attempt is None:
        return _login_page(
            request,
            error=THROTTLED,
            status_code=429,
            username=username,
            next_path=next,
            retry_after=dashboard.throttle.retry_after(),
        )
    try:
        try:
            # argon2 is slow and takes 64 MiB per check: off the event loop, a few at a time.
            user = await dashboard.passwords.run(dashboard.users.authenticate, name, password)
        except PasswordChecksBusy:
            return _login_page(
                request,
                error=BUSY,
                status_code=503,
                username=username,
                next_path=next,
                retry_after=BUSY_RETRY_SECONDS,
            )
        if user is None:
            await attempt.failed()
            return _login_page(request, error=GENERIC_FAILURE, status_code=401, username=username, next_path=next)
        await attempt.succeeded()
    finally:
        # Unchecked (busy, an error, the client gone): the reservation is freed without counting.
        await attempt.cancel()
    # A browser that signs in again (another user, say) leaves no live session behind.
    await dashboard.sessions.delete(request.cookies.get(SESSION_COOKIE))
    session_id, _ = await dashboard.sessions.create(user.name, user.stamp)
    response = RedirectResponse(f"{root_path(request)}{safe_next(next)}", status_code=303)
    set_cookie(request, response, SESSION_COOKIE, session_id, dashboard.sessions.ttl)
    clear_cookie(request, response, LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request, csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=200)] = "") -> Response:
    session = current_session(request)
    check_csrf(session.csrf, csrf_token)
    await get_dashboard(request).sessions.delete(session.id)
    response = RedirectResponse(f"{root_path(request)}/login?signed_out=1", status_code=303)
    clear_cookie(request, response, SESSION_COOKIE)
    return response
