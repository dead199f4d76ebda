"""Dead letters, durable and visible: a worker moves every message of the broker's dead-letter queue
into the alert store (so they survive the embedded mode's in-memory broker, and one query lists,
pages and counts them in both modes), and replay and purge act on them there.

Moving them is acked only after the store committed, and a dead letter's id derives from where it
came from, why and what it holds, so a redelivered one is stored once. Replay re-publishes a letter
to its original queue and deletes it only after the broker confirmed the publish.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID, uuid5

from auditflow.backends.broker import Broker, Delivery
from auditflow.backends.broker.batching import COUNT_HEADER, POISON_REASON, QUEUE_HEADER, REASON_HEADER
from auditflow.backends.store import AlertStore
from auditflow.backends.store.dead_letters import StoredDeadLetter
from auditflow.dependencies import Dependency
from auditflow.metrics import DEAD_LETTERS_STORED
from auditflow.model.dead_letter import DeadLetterResult
from auditflow.retry import call_with_recovery
from auditflow.services.worker import QueueWorker

log = logging.getLogger("auditflow.dead_letters")

_ID_NAMESPACE = UUID("3f0c61c2-52a4-4b8e-9a43-2d6f0e7c9a11")
# Headers that describe a past dead-lettering: not carried into the store's headers or a replay.
_BOOKKEEPING = {REASON_HEADER, QUEUE_HEADER, COUNT_HEADER, "x-delivery-count", "x-death"}
_BOOKKEEPING_PREFIXES = ("x-first-death-", "x-last-death-")
REPLAY_HEADER = "x-auditflow-replay-of"
REPLAY_CHUNK = 100  # letters per publish-then-delete step
REPLAY_MAX = 10_000  # letters per replay request, so that one request stays bounded


def origin(headers: Mapping[str, Any]) -> tuple[str, str]:
    """(queue, reason) of a dead letter: ours are in our headers; a message the broker dead-lettered
    by itself (a quorum queue's delivery limit) only has RabbitMQ's `x-first-death-*` headers."""
    queue = headers.get(QUEUE_HEADER) or headers.get("x-first-death-queue") or "unknown"
    reason = headers.get(REASON_HEADER)
    if reason is None:
        why = headers.get("x-first-death-reason", "unknown")
        reason = f"{POISON_REASON} (dead-lettered by the broker: {why})"
    return _text(queue), _text(reason)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def letter_id(queue: str, reason: str, body: bytes, replay_of: str = "") -> UUID:
    """The same dead letter received twice (a redelivery) has the same id; a replayed letter that
    fails again does not, so that the replay's delete cannot remove it."""
    parts = [queue.encode(), reason.encode(), replay_of.encode(), bytes(body)]
    return uuid5(_ID_NAMESPACE, hashlib.sha256(b"\0".join(parts)).hexdigest())


def plain_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: value
        for key, value in headers.items()
        if key not in _BOOKKEEPING and not key.startswith(_BOOKKEEPING_PREFIXES)
    }


def to_stored(delivery: Delivery, now_ms: int) -> StoredDeadLetter:
    queue, reason = origin(delivery.headers)
    body = bytes(delivery.body)
    replay_of = _text(delivery.headers.get(REPLAY_HEADER, ""))
    identity = letter_id(queue, reason, body, replay_of)
    return StoredDeadLetter(identity, queue, reason, now_ms, plain_headers(delivery.headers), body)


class DeadLetterWorker(QueueWorker):
    """Consumes the dead-letter queue into the store. It isolates no poison of its own: a dead
    letter that failed here would be dead-lettered into the queue it came from."""

    name = "dead-letters"
    isolates_poison = False

    def __init__(
        self,
        broker: Broker,
        broker_dependency: Dependency,
        store: AlertStore,
        store_dependency: Dependency,
        *,
        dead_letter_queue: str,
        prefetch: int = 200,
        batch_size: int = 100,
        linger_ms: int = 50,
    ) -> None:
        super().__init__(
            broker,
            broker_dependency,
            dead_letter_queue,
            dead_letter_queue=dead_letter_queue,
            prefetch=prefetch,
            batch_size=batch_size,
            linger_ms=linger_ms,
        )
        self.store = store
        self.store_dependency = store_dependency

    async def handle(self, deliveries: Sequence[Delivery]) -> None:
        now_ms = int(time.time() * 1000)
        letters = [to_stored(delivery, now_ms) for delivery in deliveries]

        async def write() -> None:
            added = await self.store.add_dead_letters(letters)
            if added:
                log.warning("stored %d new dead letter(s)", added)
            DEAD_LETTERS_STORED.set(await self.store.count_dead_letters())

        await call_with_recovery(write, self.store_dependency, self.stopping)


async def replay(
    store: AlertStore, broker: Broker, ids: Sequence[UUID] | None, *, queues: set[str], limit: int = REPLAY_MAX
) -> DeadLetterResult:
    """Publish letters back to their queues, oldest first, deleting each chunk only once the broker
    confirmed it. Letters of a queue outside `queues` (not one this pipeline consumes) are left."""
    replayed = 0
    skipped: set[UUID] = set()  # stay stored: read past them
    # Replaying all means those stored now: a replayed letter that fails again comes back as a
    # new letter (its id includes the replay), which this call must not send round and round.
    until_ms = int(time.time() * 1000)
    pending = list(dict.fromkeys(ids)) if ids is not None else None
    while replayed < limit:
        wanted: list[UUID] | None = None
        if pending is not None:
            wanted, pending = pending[:REPLAY_CHUNK], pending[REPLAY_CHUNK:]
            if not wanted:
                break
        fetched = await store.take_dead_letters(wanted, REPLAY_CHUNK + len(skipped), received_until_ms=until_ms)
        letters = [letter for letter in fetched if letter.id not in skipped][: limit - replayed]
        if not letters and pending is None:
            break
        done: list[UUID] = []
        for letter in letters:
            if letter.queue not in queues:
                log.warning(
                    "dead letter %s is from queue %r, which this pipeline does not consume", letter.id, letter.queue
                )
                skipped.add(letter.id)
                continue
            headers = {**plain_headers(letter.headers), REPLAY_HEADER: str(letter.id)}
            await broker.publish(letter.queue, [letter.body], headers=headers)
            done.append(letter.id)
        if done:
            await store.delete_dead_letters(done)
        replayed += len(done)
    remaining = await store.count_dead_letters()
    DEAD_LETTERS_STORED.set(remaining)
    log.warning("replayed %d dead letter(s); %d remain", replayed, remaining)
    return DeadLetterResult(replayed=replayed, remaining=remaining)


async def purge(store: AlertStore, ids: Sequence[UUID] | None) -> DeadLetterResult:
    purged = await store.delete_dead_letters(ids)
    remaining = await store.count_dead_letters()
    DEAD_LETTERS_STORED.set(remaining)
    log.warning("purged %d dead letter(s); %d remain", purged, remaining)
    return DeadLetterResult(purged=purged, remaining=remaining)
