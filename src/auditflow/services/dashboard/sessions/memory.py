"""Sessions in the process's memory: for tests and a single embedded process whose users accept
being signed out when it restarts."""

from __future__ import annotations

import time
from collections.abc import Callable

from auditflow.services.dashboard.sessions.base import SessionRecord, SessionStore

# Past this many records, expired ones are dropped on the next sign-in.
_PURGE_ABOVE = 10_000


class MemorySessionStore(SessionStore):
    def __init__(self, *, ttl: int, clock: Callable[[], float] = time.time) -> None:
        super().__init__(ttl=ttl, clock=clock)
        self._records: dict[str, SessionRecord] = {}

    async def _put(self, key: str, record: SessionRecord) -> None:
        if len(self._records) > _PURGE_ABOVE:
            now = self.now()
            self._records = {k: r for k, r in self._records.items() if r.expires > now}
        self._records[key] = record

    async def _load(self, key: str) -> SessionRecord | None:
        return self._records.get(key)

    async def _remove(self, key: str) -> None:
        self._records.pop(key, None)
