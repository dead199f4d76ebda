"""The queue of the in-process broker: a deque bounded by messages and by body bytes, with the futures
of the consumers waiting for messages and the publishers waiting for room."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("auditflow.broker.memory")


@dataclass(slots=True)
class QueuedMessage:
    body: bytes
    headers: Mapping[str, Any]
    delivery_count: int = 1
    decoded: Any = None  # handed to the first delivery only (see LocalBody)


class BoundedQueue:
    """A deque plus the futures of whoever waits for messages (consumers) or space (publishers).

    Bounded by messages and by body bytes: a count alone lets a backlog of large batches take all
    the memory of the process."""

    def __init__(self, max_length: int, max_bytes: int) -> None:
        self.max_length = max_length
        self.max_bytes = max_bytes
        self.ready: deque[QueuedMessage] = deque()
        self.ready_bytes = 0
        self.getters: list[asyncio.Future[None]] = []
        self.putters: list[asyncio.Future[None]] = []
        self.collecting = 0  # taken by consumers filling a batch, not yet in a handler

    @staticmethod
    def _wake(waiters: list[asyncio.Future[None]]) -> None:
        for waiter in waiters:
            resolve(waiter)
        waiters.clear()

    def room_for(self, messages: Sequence[QueuedMessage]) -> int:
        """How many of `messages`, in order, fit now. An empty queue takes at least one, so that a
        message larger than the byte bound waits for an empty queue rather than for ever."""
        count, size = 0, self.ready_bytes
        for message in messages[: max(self.max_length - len(self.ready), 0)]:
            size += len(message.body)
            if size > self.max_bytes and (count or self.ready):
                break
            count += 1
        return count

    @property
    def full(self) -> bool:
        return len(self.ready) >= self.max_length or self.ready_bytes >= self.max_bytes

    async def wait_for_room(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self.putters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self.putters:  # cancelled (a timeout): leave no stale waiter behind
                self.putters.remove(waiter)

    async def put(self, messages: Sequence[QueuedMessage]) -> None:
        start = 0
        while start < len(messages):
            space = self.room_for(messages[start:])
            if space <= 0:
                await self.wait_for_room()
                continue
            admitted = messages[start : start + space]
            self.ready.extend(admitted)
            self.ready_bytes += sum(len(m.body) for m in admitted)
            start += space
            self._wake(self.getters)

    def take(self, count: int) -> list[QueuedMessage]:
        ready = self.ready
        taken = [ready.popleft() for _ in range(min(count, len(ready)))]
        if taken:
            self.ready_bytes -= sum(len(m.body) for m in taken)
            self._wake(self.putters)
        return taken

    def return_to_head(self, messages: Sequence[QueuedMessage]) -> None:
        # Past the bounds on purpose: these messages were already admitted once.
        self.ready.extendleft(reversed(messages))
        self.ready_bytes += sum(len(m.body) for m in messages)
        self._wake(self.getters)


def resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
