"""The explicit async lifecycle every backend and service follows: `start()`, `aclose()`, `async with`."""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self


class AsyncLifecycle(abc.ABC):
    @abc.abstractmethod
    async def start(self) -> None:
        """Acquire connections and tasks; raise BackendUnavailable when a dependency is down."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop intake, finish in-flight work, release everything; safe to call twice."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
