"""Poison isolation: when a batch fails for a reason other than a dependency being down, find the
message (and then the event or alert inside it) that makes it fail, so that only that one is
dead-lettered and everything else in the batch is processed.

The split bisects the batch of messages, then the items of a failing message, each part handled
again by the service's own handler. Handlers are idempotent (events de-duplicated by id in the
window state, alerts upserted by id), so running the good part of a batch again is harmless.
Analysis and notification both go through `isolate`, via `QueueWorker`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel

from auditflow.backends.broker import Delivery
from auditflow.errors import BackendUnavailable

log = logging.getLogger("auditflow.poison")

Attempt = Callable[[Sequence[Delivery]], Awaitable[None]]

# Failed attempts allowed before the first part of the batch succeeds. Every part failing means
# the cause is not one message (a bug, a schema the store lacks): the batch then goes back to the
# broker as before, instead of being dead-lettered item by item. One poison item in 100 messages
# of 500 events fails about log2(100) + log2(500) = 16 attempts, and its sibling parts succeed.
MAX_FAILURES_WITHOUT_SUCCESS = 24


@dataclass(slots=True)
class Poison:
    """A part that fails on its own: a delivery of the batch, or one item split out of one."""

    delivery: Delivery
    reason: str
    whole: bool  # True: a delivery of the consumed batch; False: one item of a message


@dataclass(slots=True)
class _Search:
    attempt: Attempt
    originals: set[int]
    failures: int = 0
    successes: int = 0
    first_error: BaseException | None = None
    poison: list[Poison] = field(default_factory=list)


def split_items(delivery: Delivery) -> list[Delivery]:
    """The items of a message as one-item deliveries (the delivery itself when it holds one).

    Items handed over in-process are re-encoded from the models; anything else is split from the
    JSON array without validation, so an invalid item reaches the handler alone and is
    dead-lettered there as invalid."""
    items: list[Any]
    if isinstance(delivery.decoded, list) and all(isinstance(i, BaseModel) for i in delivery.decoded):
        items = delivery.decoded
    else:
        try:
            parsed = orjson.loads(delivery.body)
        except orjson.JSONDecodeError:
            return [delivery]
        items = parsed if isinstance(parsed, list) else [parsed]
    if len(items) <= 1:
        return [delivery]
    parts = []
    for item in items:
        raw = item.model_dump(mode="json") if isinstance(item, BaseModel) else item
        decoded = [item] if isinstance(item, BaseModel) else None
        parts.append(
            Delivery(orjson.dumps([raw]), delivery.headers, delivery.delivery_count, tag=None, decoded=decoded)
        )
    return parts


async def isolate(attempt: Attempt, batch: Sequence[Delivery]) -> list[Poison]:
    """Run `attempt` on the batch; when it fails, bisect to the parts that fail alone.

    Returns the poison (empty when the batch succeeded at once); every other part has been handled.
    BackendUnavailable propagates at once: a dependency is down, the whole batch is held. When no
    part succeeds (within `MAX_FAILURES_WITHOUT_SUCCESS` attempts, or at all), nothing tells a
    poison from a fault of the service, and the first error is raised again.
    """
    search = _Search(attempt, {id(d) for d in batch})
    await _run(search, list(batch))
    if search.poison and not search.successes:
        assert search.first_error is not None
        raise search.first_error
    if search.poison:
        log.warning(
            "isolated %d poison part(s) in a batch of %d messages after %d failed attempts",
            len(search.poison),
            len(batch),
            search.failures,
        )
    return search.poison


async def _run(search: _Search, batch: list[Delivery]) -> None:
    try:
        await search.attempt(batch)
    except BackendUnavailable:
        raise
    except Exception as exc:
        await _failed(search, batch, exc)
    else:
        search.successes += 1


async def _failed(search: _Search, batch: list[Delivery], exc: Exception) -> None:
    search.failures += 1
    if search.first_error is None:
        search.first_error = exc
    if not search.successes and search.failures >= MAX_FAILURES_WITHOUT_SUCCESS:
        raise search.first_error
    for delivery in batch:
        delivery.dead_letter_reason = None  # the failed attempt's marks do not count
    parts = batch if len(batch) > 1 else split_items(batch[0])
    if len(parts) > 1:
        middle = len(parts) // 2
        await _run(search, parts[:middle])
        await _run(search, parts[middle:])
        return
    search.poison.append(Poison(batch[0], describe(exc), id(batch[0]) in search.originals))


def describe(exc: BaseException) -> str:
    """The reason recorded with a dead letter: the error's type and first line, bounded."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"poison: {type(exc).__name__}: {text}"[:1000] if text else f"poison: {type(exc).__name__}"
