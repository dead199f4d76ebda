"""A bounded pool for password checks. Each argon2 verification takes 64 MiB for its duration, so
the number running at once, not the number of sign-ins arriving, decides the dashboard's memory:
a few worker threads run them, a short queue waits, and the rest are turned away at once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class PasswordChecksBusy(Exception):
    """Every worker is busy and the queue is full; try again shortly."""


class PasswordCheckPool:
    def __init__(self, workers: int = 2, queue: int = 8) -> None:
        if workers < 1 or queue < 0:
            raise ValueError("workers must be at least 1 and queue at least 0")
        self.workers = workers
        self.queue = queue
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="auditflow-password")
        self._lock = threading.Lock()
        self._admitted = 0

    @property
    def admitted(self) -> int:
        """Checks running or waiting."""
        return self._admitted

    async def run(self, check: Callable[..., T], *args: object) -> T:
        """`check(*args)` on a worker thread; PasswordChecksBusy when workers and queue are full."""
        with self._lock:
            if self._admitted >= self.workers + self.queue:
                raise PasswordChecksBusy
            self._admitted += 1
        try:
            future: Future[T] = self._executor.submit(check, *args)
        except BaseException:
            self._done()
            raise
        # Counted down when the thread is really done, not when a disconnected client's request is
        # cancelled: a hash still running still holds its memory.
        future.add_done_callback(lambda _: self._done())
        return await asyncio.wrap_future(future)

    def _done(self) -> None:
        with self._lock:
            self._admitted -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
