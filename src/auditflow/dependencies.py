"""Supervision of external dependencies: connect in the background with the back-off of
`auditflow.retry`, ping periodically, expose status for /readyz and a metric, and log failure and
recovery.

A service never blocks its start on a dependency: it answers /healthz at once, reports what is
missing in /readyz, and its workers wait for `wait_up()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

from auditflow.errors import AuditFlowError
from auditflow.metrics import DEPENDENCY_UP
from auditflow.model.status import DependencyStatus
from auditflow.model.timeutil import utcnow
from auditflow.retry import DEPENDENCY_INITIAL_S, Attempts, Backoff

log = logging.getLogger("auditflow.dependencies")


def redact_url(url: str) -> str:
    """Scheme, host and port of a backend URL: never the credentials. A comma-separated list of
    URLs (a broker's cluster nodes) is redacted part by part."""
    if "," in url:
        return ",".join(redact_url(part.strip()) for part in url.split(","))
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    path = parts.path if parts.scheme == "sqlite" else ""
    return f"{parts.scheme}://{host}{port}{path}"


class Dependency:
    """One supervised dependency (broker, state, store)."""

    def __init__(
        self,
        name: str,
        *,
        start: Callable[[], Awaitable[None]],
        ping: Callable[[], Awaitable[None]],
        critical: bool,
        impact: str,
        detail: str | None = None,
        retry_initial: float = DEPENDENCY_INITIAL_S,
        retry_max: float = 30.0,
        ping_interval: float = 5.0,
    ) -> None:
        self.name = name
        self._start = start
        self._ping = ping
        self.critical = critical
        self.impact = impact
        self.detail = detail
        self._stopping = asyncio.Event()
        self._attempts = Attempts(Backoff(retry_initial, retry_max), self._stopping)
        self.ping_interval = ping_interval
        self.state: Literal["up", "down"] = "down"
        self.last_error: str | None = "not connected yet"
        self.last_change: datetime | None = None
        self._up = asyncio.Event()
        self._down = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._started = False
        DEPENDENCY_UP.labels(name).set(0)

    @property
    def is_up(self) -> bool:
        return self.state == "up"

    def status(self) -> DependencyStatus:
        return DependencyStatus(
            name=self.name,
            status=self.state,
            critical=self.critical,
            detail=self.detail,
            last_error=None if self.is_up else self.last_error,
            last_change=self.last_change,
            impact=None if self.is_up else self.impact,
        )

    def run(self) -> None:
        """Start supervising in the background."""
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._supervise(), name=f"dependency:{self.name}")

    async def wait_up(self) -> None:
        await self._up.wait()

    def mark_down(self, error: BaseException | str) -> None:
        """Called by a worker that saw the dependency fail; the supervisor takes over recovery."""
        if self.state == "up":
            self.state = "down"
            self.last_error = str(error) or type(error).__name__
            self.last_change = utcnow()
            self._up.clear()
            self._down.set()
            DEPENDENCY_UP.labels(self.name).set(0)
            log.warning("%s is down: %s", self.name, self.last_error, extra={"dependency": self.name})

    def _set_up(self) -> None:
        if self.state != "up":
            recovered = self.last_change is not None
            self.state = "up"
            self.last_change = utcnow()
            self._down.clear()
            self._up.set()
            DEPENDENCY_UP.labels(self.name).set(1)
            log.info("%s is %s", self.name, "back up" if recovered else "up", extra={"dependency": self.name})

    async def _supervise(self) -> None:
        attempts = self._attempts
        while not self._stopping.is_set():
            try:
                if not self._started:
                    await self._start()
                    self._started = True
                else:
                    await self._ping()
                self._set_up()
                attempts.reset()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._down.wait(), self.ping_interval)
            except AuditFlowError as exc:
                first_failure = self.state == "up" or attempts.attempt == 0
                self.mark_down(exc)
                self.last_error = str(exc) or type(exc).__name__
                if first_failure:
                    log.warning(
                        "%s unavailable, retrying with back-off: %s",
                        self.name,
                        self.last_error,
                        extra={"dependency": self.name},
                    )
                await attempts.pause()

    async def aclose(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
