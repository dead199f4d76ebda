"""The throttle contract: limits per (user name, client address), so that guessing from one place
never locks the user out from another, plus a higher limit per address across all names against
password spraying. An attempt counts against both while its password is being checked."""

from __future__ import annotations

import enum
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass


class Outcome(enum.Enum):
    SUCCEEDED = "succeeded"  # clears that user's failures from that address
    FAILED = "failed"  # counts for `window` seconds
    CANCELLED = "cancelled"  # never checked (busy, error, client gone): does not count


@dataclass(slots=True)
class Attempt:
    """One reserved sign-in attempt. The first of `succeeded`, `failed` or `cancel` settles it; later
    calls do nothing, so a `finally: await attempt.cancel()` is always safe."""

    throttle: LoginThrottle
    keys: tuple[str, str]
    token: str
    settled: bool = False

    async def succeeded(self) -> None:
        await self._settle(Outcome.SUCCEEDED)

    async def failed(self) -> None:
        await self._settle(Outcome.FAILED)

    async def cancel(self) -> None:
        await self._settle(Outcome.CANCELLED)

    async def _settle(self, outcome: Outcome) -> None:
        if not self.settled:
            self.settled = True
            await self.throttle.settle(self, outcome)


class LoginThrottle(ABC):
    def __init__(
        self,
        limit: int = 5,
        address_limit: int = 20,
        window: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limit = limit
        self.address_limit = address_limit
        self.window = window
        self._clock = clock

    @staticmethod
    def keys(user: str, address: str) -> tuple[str, str]:
        # The form trims names and the directory is case-sensitive, but a guesser must not gain
        # fresh attempts by changing case.
        return f"user:{len(address)}:{address}:{user.strip().lower()}", f"ip:{address}"

    async def reserve(self, user: str, address: str) -> Attempt | None:
        """An attempt for `user` from `address`, or None when either limit is reached."""
        attempt = Attempt(self, self.keys(user, address), secrets.token_hex(8))
        return attempt if await self._reserve(attempt) else None

    def retry_after(self) -> int:
        return max(1, round(self.window))

    async def aclose(self) -> None:  # noqa: B027 - the memory throttle owns no connection
        """Release connections."""

    @abstractmethod
    async def _reserve(self, attempt: Attempt) -> bool:
        """Atomically: count both keys' recent failures and reservations, and add a reservation to
        both if each is under its limit."""

    @abstractmethod
    async def settle(self, attempt: Attempt, outcome: Outcome) -> None: ...
