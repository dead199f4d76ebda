"""Dashboard sign-in state: the session a request carries (the cookie holds only a random id, the
record lives in the session store) and the cookie helpers."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection
from starlette.responses import Response

from auditflow.services.dashboard.users import Role

SESSION_COOKIE = "auditflow_session"


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    user: str
    role: Role
    expires: int
    csrf: str

    @property
    def can_triage(self) -> bool:
        return self.role is Role.ANALYST


def is_secure(conn: HTTPConnection) -> bool:
    """True behind TLS, including a TLS-terminating proxy that says so."""
    forwarded = conn.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return conn.url.scheme == "https" or forwarded == "https"


def cookie_path(conn: HTTPConnection) -> str:
    return conn.scope.get("root_path", "") or "/"


def set_cookie(conn: HTTPConnection, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=cookie_path(conn),
        httponly=True,
        samesite="lax",
        secure=is_secure(conn),
    )


def clear_cookie(conn: HTTPConnection, response: Response, name: str) -> None:
    response.delete_cookie(name, path=cookie_path(conn), httponly=True, samesite="lax", secure=is_secure(conn))
