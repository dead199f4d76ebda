"""The sign-in throttle: an attempt is reserved before its password is checked, so concurrent guesses
cannot slip past the limit; counted in memory per process, or in Redis across dashboard replicas."""

from __future__ import annotations

from urllib.parse import urlsplit

from auditflow.config import Settings
from auditflow.services.dashboard.throttle.base import Attempt, LoginThrottle, Outcome
from auditflow.services.dashboard.throttle.memory import MemoryLoginThrottle

__all__ = ["Attempt", "LoginThrottle", "MemoryLoginThrottle", "Outcome", "create_throttle"]


def create_throttle(session_store_url: str, settings: Settings) -> LoginThrottle:
    """Beside the sessions: in Redis when they are, so that replicas share one count; otherwise in
    this process's memory."""
    if urlsplit(session_store_url).scheme in {"redis", "rediss"}:
        from auditflow.services.dashboard.throttle.redis import RedisLoginThrottle

        return RedisLoginThrottle(session_store_url, key_prefix=settings.state_key_prefix)
    return MemoryLoginThrottle()
