"""What both brokers share around a consumed batch: the dead-letter header names and metric, the
delivery limit, and calling the handler while holding the batch through a dependency outage.

The handler itself isolates poison (`services/poison.py`): what still fails here is a batch in
which no part succeeded, which goes back to the queue and is dead-lettered at the delivery limit.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from auditflow.backends.broker.base import Delivery, MessageHandler
from auditflow.correlation import BatchCorrelation
from auditflow.errors import BackendUnavailable
from auditflow.metrics import DEAD_LETTERS
from auditflow.retry import HANDLER_BACKOFF, Attempts

log = logging.getLogger("auditflow.broker")

# Headers of a dead-lettered message, identical on every backend so that tooling reading the
# dead-letter queue does not care where the message came from.
REASON_HEADER = "x-auditflow-reason"
QUEUE_HEADER = "x-auditflow-queue"
# Deliveries so far, carried by republished messages where the broker does not count (classic queues).
COUNT_HEADER = "x-auditflow-delivery-count"
POISON_REASON = "delivery limit reached"
# When ingest accepted the batch (Unix milliseconds): analysis measures detection latency from it.
INGESTED_AT_HEADER = "x-auditflow-ingested-at"

# The `reason` label of the dead-letter metric: a few kinds, never the free text (unbounded).
_REASON_KINDS = (
    ("poison", "poison"),
    (POISON_REASON, "delivery_limit"),
    ("invalid", "invalid"),
    ("malformed", "invalid"),
    ("body must", "invalid"),
)


def reason_kind(reason: str) -> str:
    """The kind of a dead-letter reason: poison, delivery_limit, invalid or other."""
    return next((kind for prefix, kind in _REASON_KINDS if reason.startswith(prefix)), "other")


def count_dead_letters(queue: str, reason: str, count: int = 1) -> None:
    DEAD_LETTERS.labels(queue, reason_kind(reason)).inc(count)


class Outcome(enum.Enum):
    """How a call of the handler ended."""

    HANDLED = "handled"  # returned: ack everything, dead-letter what it marked
    FAILED = "failed"  # raised: return the batch (or dead-letter the poison in it)
    STOPPED = "stopped"  # a dependency stayed down until the consumer was stopped: return the batch


def dead_letter_headers(headers: Mapping[str, Any], reason: str, queue: str) -> dict[str, Any]:
    """The original headers plus why and where from; the delivery counter is dropped because
    the message leaves its queue for good. Every dead letter passes here, so it is counted here."""
    result = {key: value for key, value in headers.items() if key != COUNT_HEADER}
    result[REASON_HEADER] = reason[:1000]
    result[QUEUE_HEADER] = queue
    count_dead_letters(queue, reason)
    return result


def split_poison(batch: Sequence[Delivery], max_deliveries: int) -> list[Delivery]:
    """The deliveries to hand to the handler. A message already delivered more than
    `max_deliveries` times (after a crash, or a stop while it was held) is marked for the
    dead-letter queue instead of reaching the handler again."""
    live: list[Delivery] = []
    for delivery in batch:
        if delivery.delivery_count > max_deliveries:
            delivery.dead_letter(POISON_REASON)
        else:
            live.append(delivery)
    return live


def mark_failed(batch: Sequence[Delivery], max_deliveries: int) -> list[Delivery]:
    """After the handler raised: mark the deliveries that used up their deliveries as poison and
    return the ones to put back in the queue."""
    requeue: list[Delivery] = []
    for delivery in batch:
        if delivery.delivery_count >= max_deliveries:
            delivery.dead_letter(f"{POISON_REASON}: {delivery.failure}" if delivery.failure else POISON_REASON)
        else:
            delivery.dead_letter_reason = None
            requeue.append(delivery)
    return requeue


async def run_handler(
    handler: MessageHandler, batch: Sequence[Delivery], stopping: asyncio.Event, *, attempts: Attempts | None = None
) -> Outcome:
    """Call the handler once, or again and again while it raises BackendUnavailable.

    A dependency that is down says nothing about the messages, so the batch is held (unacked,
    which also stops the flow through prefetch) and retried with the back-off of
    `auditflow.retry` instead of being returned and counted toward the poison limit. A stop ends
    the wait.
    """
    with BatchCorrelation(delivery.headers for delivery in batch):  # on every log line of the batch
        return await _run_handler(handler, batch, stopping, attempts)


async def _run_handler(
    handler: MessageHandler, batch: Sequence[Delivery], stopping: asyncio.Event, attempts: Attempts | None
) -> Outcome:
    attempts = attempts or Attempts(HANDLER_BACKOFF, stopping)
    while True:
        for delivery in batch:
            delivery.dead_letter_reason = None  # a failed attempt's marks do not carry over
        try:
            await handler(batch)
        except BackendUnavailable as exc:
            if stopping.is_set():
                return Outcome.STOPPED
            log.warning("handler dependency unavailable, holding %d messages: %s", len(batch), exc)
            if await attempts.pause():
                return Outcome.STOPPED
        except Exception as exc:
            log.exception("handler failed on a batch of %d messages", len(batch))
            for delivery in batch:
                delivery.failure = f"{type(exc).__name__}: {exc}"[:500]
            return Outcome.FAILED
        else:
            return Outcome.HANDLED
