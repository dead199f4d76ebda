"""The dashboard's session store contract: random session ids whose records (user, password stamp,
CSRF token, expiry) live on the server, so that signing out or changing a password ends a session
everywhere. Backends implement three primitives over the SHA-256 of the id."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from auditflow.services.dashboard.csrf import new_token

# secrets.token_urlsafe(32): 43 characters of the URL-safe alphabet.
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """What the server knows about one signed-in browser."""

    user: str
    stamp: str  # the user's password fingerprint when signing in; a new password ends the session
    csrf: str
    expires: int  # epoch seconds


def session_key(session_id: str) -> str:
    """Where a session is stored: a hash, so that reading the store does not sign anyone in."""
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore(ABC):
    """Creates, finds and ends sessions. Every method raises BackendUnavailable or BackendError
    (never a driver's exception) when the store cannot answer."""

    def __init__(self, *, ttl: int, clock: Callable[[], float] = time.time) -> None:
        self.ttl = ttl
        self._clock = clock

    def now(self) -> int:
        return int(self._clock())

    async def create(self, user: str, stamp: str) -> tuple[str, SessionRecord]:
        """A new session for `user`: its id (for the cookie only) and its record."""
        session_id = secrets.token_urlsafe(32)
        record = SessionRecord(user=user, stamp=stamp, csrf=new_token(), expires=self.now() + self.ttl)
        await self._put(session_key(session_id), record)
        return session_id, record

    async def get(self, session_id: str | None) -> SessionRecord | None:
        """The live session with this id; None when unknown, ended, expired or malformed."""
        if not session_id or not _SESSION_ID.match(session_id):
            return None
        record = await self._load(session_key(session_id))
        if record is None or record.expires <= self.now():
            return None
        return record

    async def delete(self, session_id: str | None) -> None:
        """End a session (sign-out). Unknown ids are ignored."""
        if session_id and _SESSION_ID.match(session_id):
            await self._remove(session_key(session_id))

    async def ping(self) -> None:  # noqa: B027 - the memory store is always there
        """Raise BackendUnavailable or BackendError unless the store answers."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, the memory store owns no connection
        """Release connections; the store is not used afterwards. Backends connect on first use,
        so that the dashboard starts while its store is down."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @abstractmethod
    async def _put(self, key: str, record: SessionRecord) -> None:
        """Store `record` under `key` until `record.expires` (expired records may linger, unread)."""

    @abstractmethod
    async def _load(self, key: str) -> SessionRecord | None: ...

    @abstractmethod
    async def _remove(self, key: str) -> None: ...
