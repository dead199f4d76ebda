"""Dashboard sign-in state: the session a request carries (the cookie holds only a random id, the
record lives in the session store), cookie helpers, and the sign-in throttle that reserves an
attempt before the password is checked, so concurrent guesses cannot slip past it."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

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


@dataclass(slots=True)
class _Counter:
    failures: deque[float] = field(default_factory=deque)
    in_flight: int = 0


@dataclass(slots=True)
class Attempt:
    """One reserved sign-in attempt. Exactly one of `succeeded`, `failed` or `cancel` settles it;
    later calls do nothing, so a `finally: cancel()` is always safe."""

    throttle: LoginThrottle
    keys: tuple[str, str]
    settled: bool = False

    def succeeded(self) -> None:
        if self._settle():
            # A right password clears that user's failures from this address, not the address's.
            self.throttle._forget(self.keys[0])

    def failed(self) -> None:
        if self._settle():
            self.throttle._record_failure(self.keys)

    def cancel(self) -> None:
        """The password was never checked (busy, error): the attempt does not count."""
        self._settle()

    def _settle(self) -> bool:
        if self.settled:
            return False
        self.settled = True
        self.throttle._release(self.keys)
        return True


class LoginThrottle:
    """Failed sign-ins per (user name, client address), so that guessing from one place never locks
    the user out from another, plus a higher limit per address across all names against spraying.

    An attempt is reserved before its password check and counts against both limits while in
    flight; `reserve` has no await inside, so on the event loop it is atomic. In memory: each
    dashboard process counts its own attempts."""

    def __init__(
        self,
        limit: int = 5,
        address_limit: int = 20,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.address_limit = address_limit
        self.window = window
        self._clock = clock
        self._counters: dict[str, _Counter] = {}

    def reserve(self, user: str, address: str) -> Attempt | None:
        """An attempt for `user` from `address`, or None when either limit is reached."""
        keys = (f"user:{user.strip().lower()}@{address}", f"ip:{address}")
        now = self._clock()
        if len(self._counters) > 10_000:
            # Bound memory under a spray of addresses and names: forget the idle entries.
            for key in list(self._counters):
                self._count(key, now)
        if self._count(keys[0], now) >= self.limit or self._count(keys[1], now) >= self.address_limit:
            return None
        for key in keys:
            self._counters.setdefault(key, _Counter()).in_flight += 1
        return Attempt(self, keys)

    def retry_after(self) -> int:
        return max(1, round(self.window))

    def _count(self, key: str, now: float) -> int:
        counter = self._counters.get(key)
        if counter is None:
            return 0
        while counter.failures and counter.failures[0] <= now - self.window:
            counter.failures.popleft()
        if not counter.failures and not counter.in_flight:
            del self._counters[key]
            return 0
        return len(counter.failures) + counter.in_flight

    def _release(self, keys: tuple[str, ...]) -> None:
        for key in keys:
            self._counters[key].in_flight -= 1

    def _record_failure(self, keys: tuple[str, ...]) -> None:
        now = self._clock()
        for key in keys:
            self._counters.setdefault(key, _Counter()).failures.append(now)

    def _forget(self, key: str) -> None:
        counter = self._counters.get(key)
        if counter is not None:
            counter.failures.clear()
            if not counter.in_flight:
                del self._counters[key]
