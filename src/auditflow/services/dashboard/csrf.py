"""CSRF protection for the dashboard's forms: a random token in the session (or, before sign-in, in a
cookie of its own) that every POST must echo in a hidden field."""

from __future__ import annotations

import hmac
import secrets

from fastapi import HTTPException, status

CSRF_FIELD = "csrf_token"
LOGIN_CSRF_COOKIE = "auditflow_login"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def tokens_match(expected: str | None, provided: object) -> bool:
    if not expected or not isinstance(provided, str) or not provided:
        return False
    return hmac.compare_digest(expected.encode(), provided.encode())


def check_csrf(expected: str | None, provided: object) -> None:
    """Raise 403 unless the form echoed the expected token."""
    if not tokens_match(expected, provided):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "The form expired or did not come from this site. Reload the page and try again."
        )
